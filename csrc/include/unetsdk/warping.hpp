// Topology-preserving warping of a binary ground truth toward a thresholded proposal
// (Jain et al., "Boundary learning by optimization with topological constraints", CVPR 2010).
//
// 2D follows Fiji's trainableSegmentation.metrics.WarpingError exactly: mismatches are listed in
// column-major order (x outer, y inner), keyed by float32(|p - threshold|) and stable-sorted by key
// descending; passes over that list flip every pixel that is simple in the current state until a pass
// flips nothing. Flips only turn mismatches into matches, so the survivors' order never changes and
// one sort plus re-walks of the survivors gives Fiji's result in O(N + M log M + M * passes).
// The image is surrounded by background. 3D is the same greedy relaxation with 3D simple points
// (foreground 6-, background 26-connected); ties are ordered x outer, then y, then z, so a one-slice
// volume is ordered as in 2D.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "simple_point.hpp"
#include "views.hpp"

namespace unetsdk {

// Proposal value as double: float32 values are promoted exactly (Fiji compares float pixels to a
// double threshold); bool/uint8 proposals are 0 or 1.
template <class P>
inline double proposal_value(P v) { return static_cast<double>(v); }

// Sort key of a mismatch: descending float32(|p - th|), then ascending scan index.
inline std::uint64_t mismatch_key(double p, double threshold, std::uint32_t scan_index) {
    const float key = static_cast<float>(std::fabs(p - threshold));
    std::uint32_t bits;
    std::memcpy(&bits, &key, sizeof bits);  // non-negative floats order like their bit patterns
    return (static_cast<std::uint64_t>(~bits) << 32) | scan_index;
}

struct WarpWorkspace {
    std::vector<std::uint8_t> padded;
    std::vector<std::uint64_t> keys;
    std::vector<std::size_t> live;  // padded positions of the mismatches still unresolved
};

// Warps slice z of the ground truth. truth, mask and warped are contiguous (ny, nx) buffers;
// mask may be null (warping allowed everywhere; else only where mask != 0, and only there are
// mismatches counted). survivors receives the row-major indices of the pixels still mismatched, in
// processing order.
template <class P>
void warp_slice_2d(const std::uint8_t* truth, const View3D<P>& proposal, index_t z, const std::uint8_t* mask,
                   double threshold, WarpWorkspace& ws, std::uint8_t* warped,
                   std::vector<std::uint32_t>& survivors) {
    const index_t ny = proposal.ny, nx = proposal.nx, w2 = nx + 2;
    ws.padded.assign(static_cast<std::size_t>((ny + 2) * w2), 0);
    std::uint8_t* pad = ws.padded.data();
    ws.keys.clear();
    for (index_t y = 0; y < ny; ++y) {
        const char* prow = proposal.row(z, y);
        const std::uint8_t* trow = truth + y * nx;
        const std::uint8_t* mrow = mask ? mask + y * nx : nullptr;
        std::uint8_t* drow = pad + (y + 1) * w2 + 1;
        for (index_t x = 0; x < nx; ++x) {
            const std::uint8_t t = trow[x];
            drow[x] = t;
            const double p = proposal_value(proposal.at_row(prow, x));
            if (static_cast<std::uint8_t>(p > threshold) != t && (!mrow || mrow[x]))
                ws.keys.push_back(mismatch_key(p, threshold, static_cast<std::uint32_t>(x * ny + y)));
        }
    }
    std::sort(ws.keys.begin(), ws.keys.end());
    ws.live.resize(ws.keys.size());
    for (std::size_t i = 0; i < ws.keys.size(); ++i) {
        const auto scan = static_cast<index_t>(ws.keys[i] & 0xFFFFFFFFu);
        const index_t x = scan / ny, y = scan % ny;
        ws.live[i] = static_cast<std::size_t>((y + 1) * w2 + x + 1);
    }
    const auto& simple = topology::simple_table_2d();
    bool flipped = true;
    while (flipped && !ws.live.empty()) {
        flipped = false;
        std::size_t kept = 0;
        for (const std::size_t pos : ws.live) {
            const std::uint8_t* c = pad + pos;
            const unsigned code = c[-w2 - 1] | c[-w2] << 1 | c[-w2 + 1] << 2 | c[-1] << 3 | c[1] << 4 |
                                  c[w2 - 1] << 5 | c[w2] << 6 | c[w2 + 1] << 7;
            if (simple[code]) {
                pad[pos] ^= 1u;
                flipped = true;
            } else {
                ws.live[kept++] = pos;
            }
        }
        ws.live.resize(kept);
    }
    for (index_t y = 0; y < ny; ++y) std::memcpy(warped + y * nx, pad + (y + 1) * w2 + 1, static_cast<std::size_t>(nx));
    survivors.resize(ws.live.size());
    for (std::size_t i = 0; i < ws.live.size(); ++i) {
        const auto pos = static_cast<index_t>(ws.live[i]);
        survivors[i] = static_cast<std::uint32_t>((pos / w2 - 1) * nx + (pos % w2 - 1));
    }
}

// Native 3D warp of a whole (nz, ny, nx) volume; buffers are contiguous (nz, ny, nx).
template <class P>
void warp_volume_3d(const std::uint8_t* truth, const View3D<P>& proposal, const std::uint8_t* mask,
                    double threshold, WarpWorkspace& ws, std::uint8_t* warped, std::vector<std::uint64_t>& survivors) {
    const index_t nz = proposal.nz, ny = proposal.ny, nx = proposal.nx;
    const index_t w2 = nx + 2, plane = (ny + 2) * w2;
    ws.padded.assign(static_cast<std::size_t>((nz + 2) * plane), 0);
    std::uint8_t* pad = ws.padded.data();
    ws.keys.clear();
    for (index_t z = 0; z < nz; ++z)
        for (index_t y = 0; y < ny; ++y) {
            const char* prow = proposal.row(z, y);
            const index_t base = (z * ny + y) * nx;
            std::uint8_t* drow = pad + (z + 1) * plane + (y + 1) * w2 + 1;
            for (index_t x = 0; x < nx; ++x) {
                const std::uint8_t t = truth[base + x];
                drow[x] = t;
                const double p = proposal_value(proposal.at_row(prow, x));
                if (static_cast<std::uint8_t>(p > threshold) != t && (!mask || mask[base + x]))
                    ws.keys.push_back(
                        mismatch_key(p, threshold, static_cast<std::uint32_t>((x * ny + y) * nz + z)));
            }
        }
    std::sort(ws.keys.begin(), ws.keys.end());
    ws.live.resize(ws.keys.size());
    for (std::size_t i = 0; i < ws.keys.size(); ++i) {
        const auto scan = static_cast<index_t>(ws.keys[i] & 0xFFFFFFFFu);
        const index_t z = scan % nz, y = (scan / nz) % ny, x = scan / (nz * ny);
        ws.live[i] = static_cast<std::size_t>((z + 1) * plane + (y + 1) * w2 + x + 1);
    }
    const auto& adj = topology::adjacency_3d();
    index_t offsets[26];
    for (int k = 0; k < 26; ++k) offsets[k] = adj.offset[k][0] * plane + adj.offset[k][1] * w2 + adj.offset[k][2];
    bool flipped = true;
    while (flipped && !ws.live.empty()) {
        flipped = false;
        std::size_t kept = 0;
        for (const std::size_t pos : ws.live) {
            const std::uint8_t* c = pad + pos;
            std::uint32_t code = 0;
            for (int k = 0; k < 26; ++k) code |= static_cast<std::uint32_t>(c[offsets[k]]) << k;
            if (topology::is_simple_3d(code)) {
                pad[pos] ^= 1u;
                flipped = true;
            } else {
                ws.live[kept++] = pos;
            }
        }
        ws.live.resize(kept);
    }
    for (index_t z = 0; z < nz; ++z)
        for (index_t y = 0; y < ny; ++y)
            std::memcpy(warped + (z * ny + y) * nx, pad + (z + 1) * plane + (y + 1) * w2 + 1, static_cast<std::size_t>(nx));
    survivors.resize(ws.live.size());
    for (std::size_t i = 0; i < ws.live.size(); ++i) {
        const auto pos = static_cast<index_t>(ws.live[i]);
        const index_t z = pos / plane - 1, y = (pos % plane) / w2 - 1, x = pos % w2 - 1;
        survivors[i] = static_cast<std::uint64_t>((z * ny + y) * nx + x);
    }
}

}  // namespace unetsdk
