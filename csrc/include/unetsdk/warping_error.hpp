// Warping error of a ground-truth stack or volume against a probability map: warp, then classify
// the pixels left mismatched. 2D mode scores each slice of a (Z, H, W) stack independently, exactly
// as Fiji does; 3D mode warps the volume as a whole.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "classify.hpp"
#include "scratch_cache.hpp"
#include "thread_pool.hpp"
#include "views.hpp"
#include "warping.hpp"

namespace unetsdk {

struct WarpingCounts {
    std::int64_t mismatches = 0;
    std::array<std::int64_t, kErrorTypes> by_type{};   // pixels, indexed by ErrorType (entry 0 unused)
    std::array<std::int64_t, kErrorTypes> clusters{};  // connected clusters of those pixels

    WarpingCounts& operator+=(const WarpingCounts& o) {
        mismatches += o.mismatches;
        for (int k = 0; k < kErrorTypes; ++k) by_type[k] += o.by_type[k], clusters[k] += o.clusters[k];
        return *this;
    }
};

// Clusters of leftover mismatches as Fiji's clusterMismatchesByError counts them: the pixels of each
// type are grouped into connected clusters, split by the warped value where a type has two causes
// (hole additions: background pixels face-connected, foreground pixels fully connected; hole
// deletions: both face-connected); mergers are fully connected (8 / 26), all others face-connected.
template <class Index>
void count_clusters(const std::uint8_t* warped, index_t nz, index_t ny, index_t nx, bool volumetric,
                    const Index* survivors, const std::uint8_t* codes, std::size_t n, std::vector<std::uint8_t>& groups,
                    std::vector<std::uint8_t>& row, RunLabels& runs, WarpingCounts& counts) {
    struct Group { ErrorType type; int warped; bool full; };  // warped: -1 = any
    static constexpr Group kGroups[8] = {
        {kObjectAddition, -1, false}, {kHoleDeletion, 0, false}, {kMerger, -1, true}, {kHoleAddition, 0, false},
        {kObjectDeletion, -1, false}, {kHoleAddition, 1, true}, {kSplit, -1, false}, {kHoleDeletion, 1, false}};
    groups.assign(static_cast<std::size_t>(nz * ny * nx), 0);
    unsigned present = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const auto idx = static_cast<std::size_t>(survivors[i]);
        for (int g = 0; g < 8; ++g)
            if (kGroups[g].type == codes[i] && (kGroups[g].warped < 0 || kGroups[g].warped == (warped[idx] ? 1 : 0))) {
                groups[idx] = static_cast<std::uint8_t>(g + 1);
                present |= 1u << g;
                break;
            }
    }
    row.resize(static_cast<std::size_t>(nx));
    for (int g = 0; g < 8; ++g) {
        if (!(present >> g & 1u)) continue;
        const auto id = static_cast<std::uint8_t>(g + 1);
        label_runs_by_line(nz, ny, nx, volumetric, [&](index_t l, std::uint64_t* words) {
            const std::uint8_t* src = groups.data() + l * nx;
            for (index_t x = 0; x < nx; ++x) row[static_cast<std::size_t>(x)] = src[x] == id;
            pack_greater(row.data(), nx, 0, words);
        }, runs, kGroups[g].full);
        counts.clusters[kGroups[g].type] += runs.count;
    }
}

struct WarpingWorkspace {
    WarpWorkspace warp;
    ClassifyWorkspace classify;
    std::vector<std::uint32_t> survivors;
    std::vector<std::uint64_t> survivors3d;
    std::vector<std::uint8_t> codes;
    std::vector<std::uint8_t> groups, row, target_bytes;
    RunLabels cluster_runs;
};

// Warps and classifies one (ny, nx) slice. warp(warp_workspace, warped_slice, survivors) warps it
// (warp_slice_2d_with or an equivalent that gets its mismatch order elsewhere); warped_slice (ny*nx)
// receives the warped truth; classification_slice (ny*nx, may be null) receives the ErrorType of each
// leftover pixel and 0 elsewhere. with_clusters also counts clusters. truth_labels (optional): the
// component labels of the truth slice (0 = background, truth_count of them), which spare labelling the
// warped slice.
template <class Warp>
WarpingCounts warp_and_classify_slice(Warp&& warp, index_t ny, index_t nx, int radius, WarpingWorkspace& ws,
                                      std::uint8_t* warped_slice, std::uint8_t* classification_slice,
                                      bool with_clusters, const std::uint32_t* truth_labels = nullptr,
                                      std::uint32_t truth_count = 0) {
    const index_t plane = ny * nx;
    warp(ws.warp, warped_slice, ws.survivors);
    WarpingCounts counts;
    counts.mismatches = static_cast<std::int64_t>(ws.survivors.size());
    ws.codes.resize(ws.survivors.size());
    classify_mismatches(warped_slice, 1, ny, nx, false, ws.survivors.data(), ws.survivors.size(), radius, ws.classify,
                        ws.codes.data(), truth_labels, truth_count);
    if (classification_slice) std::fill(classification_slice, classification_slice + plane, std::uint8_t(0));
    for (std::size_t i = 0; i < ws.survivors.size(); ++i) {
        ++counts.by_type[ws.codes[i]];
        if (classification_slice) classification_slice[ws.survivors[i]] = ws.codes[i];
    }
    if (with_clusters)
        count_clusters(warped_slice, 1, ny, nx, false, ws.survivors.data(), ws.codes.data(), ws.survivors.size(),
                       ws.groups, ws.row, ws.cluster_runs, counts);
    return counts;
}

// 2D mode over a (Z, H, W) stack, slices in parallel. warped and classification are (Z, H, W).
template <class P>
WarpingCounts warping_error_2d(const std::uint8_t* truth, const View3D<P>& proposal, const std::uint8_t* mask,
                               double threshold, int radius, unsigned threads, std::uint8_t* warped,
                               std::uint8_t* classification) {
    const index_t plane = proposal.ny * proposal.nx;
    const auto workers = static_cast<unsigned>(std::min<index_t>(resolve_threads(threads), std::max<index_t>(1, proposal.nz)));
    std::vector<Scratch<WarpingWorkspace>> ws;  // kept between calls for small slices
    for (unsigned w = 0; w < workers; ++w) ws.emplace_back(plane);
    std::vector<WarpingCounts> per_slice(static_cast<std::size_t>(proposal.nz));
    parallel_for(static_cast<std::size_t>(proposal.nz), workers, [&](std::size_t z, unsigned w) {
        const auto zi = static_cast<index_t>(z);
        WarpingWorkspace& worker_ws = *ws[w];
        const ThresholdedRows<P> target_row(proposal, zi, threshold, worker_ws.target_bytes);
        const auto warp = [&](WarpWorkspace& warp_ws, std::uint8_t* warped_slice, std::vector<std::uint32_t>& survivors) {
            warp_slice_2d_with(truth + zi * plane, proposal, zi, mask ? mask + zi * plane : nullptr, threshold,
                               target_row, warp_ws, warped_slice, survivors);
        };
        per_slice[z] = warp_and_classify_slice(warp, proposal.ny, proposal.nx, radius, worker_ws, warped + zi * plane,
                                               classification ? classification + zi * plane : nullptr, true);
    });
    WarpingCounts total;
    for (const auto& c : per_slice) total += c;
    return total;
}

// Native 3D mode over a (Z, H, W) volume.
template <class P>
WarpingCounts warping_error_3d(const std::uint8_t* truth, const View3D<P>& proposal, const std::uint8_t* mask,
                               double threshold, int radius, std::uint8_t* warped, std::uint8_t* classification) {
    WarpingWorkspace ws;
    warp_volume_3d(truth, proposal, mask, threshold, ws.warp, warped, ws.survivors3d);
    WarpingCounts counts;
    counts.mismatches = static_cast<std::int64_t>(ws.survivors3d.size());
    ws.codes.resize(ws.survivors3d.size());
    classify_mismatches(warped, proposal.nz, proposal.ny, proposal.nx, true, ws.survivors3d.data(),
                        ws.survivors3d.size(), radius, ws.classify, ws.codes.data());
    if (classification) std::fill(classification, classification + proposal.size(), std::uint8_t(0));
    for (std::size_t i = 0; i < ws.survivors3d.size(); ++i) {
        ++counts.by_type[ws.codes[i]];
        if (classification) classification[ws.survivors3d[i]] = ws.codes[i];
    }
    count_clusters(warped, proposal.nz, proposal.ny, proposal.nx, true, ws.survivors3d.data(), ws.codes.data(),
                   ws.survivors3d.size(), ws.groups, ws.row, ws.cluster_runs, counts);
    return counts;
}

}  // namespace unetsdk
