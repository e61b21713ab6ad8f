// Topology-preserving warping of a binary ground truth toward a thresholded proposal
// (Jain et al., "Boundary learning by optimization with topological constraints", CVPR 2010).
//
// 2D follows Fiji's trainableSegmentation.metrics.WarpingError exactly: mismatches are listed in
// column-major order (x outer, y inner), keyed by float32(|p - threshold|) and stable-sorted by key
// descending; passes over that list flip every pixel that is simple in the current state until a pass
// flips nothing. Flips only turn mismatches into matches, so the survivors' order never changes and
// one sort plus passes that re-test only the pixels whose neighbourhood changed (greedy_passes) give
// Fiji's result in O(N + M log M + flips * neighbours * log64 M), whatever the number of passes.
// The image is surrounded by background. 3D is the same greedy relaxation with 3D simple points
// (foreground 6-, background 26-connected); ties are ordered x outer, then y, then z, so a one-slice
// volume is ordered as in 2D.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "bitrows.hpp"
#include "simple_point.hpp"
#include "views.hpp"

namespace unetsdk {

// Proposal value as double: float32 values are promoted exactly (Fiji compares float pixels to a
// double threshold); bool/uint8 proposals are 0 or 1.
template <class P>
inline double proposal_value(P v) { return static_cast<double>(v); }

// "p > threshold" with p promoted to double, evaluated in P's own precision where that is exact:
// for float p, double(p) > th  <=>  p > (the largest float <= th), which vectorises.
template <class P>
struct Above {
    double cut;
    explicit Above(double threshold) : cut(threshold) {}
    bool operator()(P v) const { return static_cast<double>(v) > cut; }
};
template <>
struct Above<float> {
    float cut;
    explicit Above(double threshold) : cut(static_cast<float>(threshold)) {
        if (static_cast<double>(cut) > threshold) cut = std::nextafter(cut, -INFINITY);
    }
    bool operator()(float v) const { return v > cut; }
};

// Bit pattern of float32(|p - th|), computed in double and rounded once (as Fiji's (float) cast).
// Non-negative floats order like their bit patterns.
inline std::uint32_t key_bits(double p, double threshold) {
    const float key = static_cast<float>(std::fabs(p - threshold));
    std::uint32_t bits;
    std::memcpy(&bits, &key, sizeof bits);
    return bits;
}

inline int bit_width(std::uint64_t v) {
    int n = 0;
    while (v) ++n, v >>= 1;
    return n;
}

// Sorts keys ascending by their bits [first_bit, first_bit + bits), stably (keys that tie there keep
// their order): LSD radix sort (11-bit digits) for large inputs.
inline void sort_keys(std::vector<std::uint64_t>& keys, std::vector<std::uint64_t>& scratch, int bits, int first_bit = 0) {
    if (keys.size() < 4096) {
        std::stable_sort(keys.begin(), keys.end(),
                         [first_bit](std::uint64_t a, std::uint64_t b) { return (a >> first_bit) < (b >> first_bit); });
        return;
    }
    constexpr int kDigit = 11;
    constexpr std::size_t kBuckets = std::size_t(1) << kDigit;
    const int digits = (bits + kDigit - 1) / kDigit;
    scratch.resize(keys.size());
    // all digit histograms in one read of the keys
    std::vector<std::uint32_t> count(kBuckets * static_cast<std::size_t>(digits), 0);
    for (const std::uint64_t k : keys)
        for (int d = 0; d < digits; ++d) ++count[d * kBuckets + ((k >> (first_bit + d * kDigit)) & (kBuckets - 1))];
    for (int d = 0; d < digits; ++d) {
        std::uint32_t* c = count.data() + d * kBuckets;
        if (*std::max_element(c, c + kBuckets) == keys.size()) continue;  // digit constant: order unchanged
        std::uint32_t sum = 0;
        for (std::size_t b = 0; b < kBuckets; ++b) {
            const std::uint32_t n = c[b];
            c[b] = sum, sum += n;
        }
        const int shift = first_bit + d * kDigit;
        for (const std::uint64_t k : keys) scratch[c[(k >> shift) & (kBuckets - 1)]++] = k;
        keys.swap(scratch);
    }
}

// Row provider for warp_slice_2d_with / label_runs_by_line: slice z of a proposal, binarised as
// p > threshold, as bitmasks.
template <class P>
struct ThresholdedRows {
    const View3D<P>& proposal;
    index_t z;
    Above<P> above;
    std::vector<std::uint8_t>& bytes;
    ThresholdedRows(const View3D<P>& p, index_t z_, double threshold, std::vector<std::uint8_t>& scratch)
        : proposal(p), z(z_), above(threshold), bytes(scratch) {
        bytes.resize(static_cast<std::size_t>(p.nx));
    }
    void operator()(index_t y, std::uint64_t* words) const {
        const char* prow = proposal.row(z, y);
        for (index_t x = 0; x < proposal.nx; ++x) bytes[static_cast<std::size_t>(x)] = above(proposal.at_row(prow, x)) ? 1 : 0;
        pack_greater(bytes.data(), proposal.nx, 0, words);
    }
};

// A set of list positions 0..n-1 as a 64-ary tree of bitsets (bit i of a level is set iff word i of
// the level below is nonzero): insert, erase and "smallest element >= i" cost O(log64 n) word
// operations, so a pass can jump from one dirty position to the next without walking the list.
class PositionSet {
public:
    static constexpr std::size_t npos = ~std::size_t(0);

    void reset(std::size_t n) {
        std::size_t levels = 0;
        do {
            n = (n + 63) / 64;
            if (levels_.size() == levels) levels_.emplace_back();
            levels_[levels++].assign(n, 0);
        } while (n > 1);
        levels_.resize(levels);
    }
    void insert(std::size_t i) {
        for (auto& words : levels_) {
            std::uint64_t& w = words[i >> 6];
            const std::uint64_t bit = std::uint64_t(1) << (i & 63);
            if (w & bit) return;  // the levels above are set already
            w |= bit;
            i >>= 6;
        }
    }
    void erase(std::size_t i) {
        for (auto& words : levels_) {
            std::uint64_t& w = words[i >> 6];
            w &= ~(std::uint64_t(1) << (i & 63));
            if (w) return;  // the word stays nonzero: the levels above are unchanged
            i >>= 6;
        }
    }
    // Smallest element >= i, or npos.
    std::size_t next(std::size_t i) const {
        std::size_t level = 0;
        for (;; ++level) {  // climb until a word has a set bit at or after i
            if (level == levels_.size() || (i >> 6) >= levels_[level].size()) return npos;
            const std::uint64_t w = levels_[level][i >> 6] & (~std::uint64_t(0) << (i & 63));
            if (w) {
                i = (i & ~std::size_t(63)) | static_cast<std::size_t>(count_trailing_zeros(w));
                break;
            }
            i = (i >> 6) + 1;
        }
        while (level > 0) {  // descend along the lowest set bits
            --level;
            i = i << 6 | static_cast<std::size_t>(count_trailing_zeros(levels_[level][i]));
        }
        return i;
    }

private:
    std::vector<std::vector<std::uint64_t>> levels_;
};

// Padded position -> list position of the pixels still mismatched (indexed_passes): open addressing
// with linear probing, at most half full, so that its memory follows the mismatches rather than the
// image (a dense map would add 4 bytes per voxel to a 3D warp).
class HashedPositions {
public:
    void reset(std::size_t n) {
        shift_ = 64;
        std::size_t capacity = 1;
        while (capacity < 2 * n) capacity <<= 1, --shift_;
        keys_.assign(capacity, 0);
        values_.resize(capacity);
    }
    void insert(std::size_t position, std::size_t index) {
        std::size_t s = slot(position);
        while (keys_[s]) s = (s + 1) & (keys_.size() - 1);
        keys_[s] = static_cast<std::uint64_t>(position) + 1;
        values_[s] = static_cast<std::uint32_t>(index);
    }
    std::size_t find(std::size_t position) const {  // position must have been inserted
        const std::uint64_t key = static_cast<std::uint64_t>(position) + 1;
        std::size_t s = slot(position);
        while (keys_[s] != key) s = (s + 1) & (keys_.size() - 1);
        return values_[s];
    }

private:
    std::size_t slot(std::size_t position) const {  // Fibonacci hashing: spreads neighbouring positions
        return shift_ == 64 ? 0 : static_cast<std::size_t>((static_cast<std::uint64_t>(position) * 0x9E3779B97F4A7C15ull) >> shift_);
    }
    std::vector<std::uint64_t> keys_;  // position + 1; 0 = empty slot
    std::vector<std::uint32_t> values_;  // list positions (< 2^32: indexed_passes checks)
    int shift_ = 64;
};

// What the last greedy_passes did: list entries visited (walks and indexing), simple-point tests,
// flips, passes. The C++ tests bound the work with it.
struct RelaxStats {
    std::size_t visits = 0, tests = 0, flips = 0, passes = 0;
};

// Scratch of indexed_passes, kept with the warp's workspace.
struct RelaxScratch {
    PositionSet dirty;  // list positions whose neighbourhood changed since they were last tested
    HashedPositions index;  // padded position -> list position
    RelaxStats stats;
};

struct WarpWorkspace {
    std::vector<std::uint8_t> padded;
    std::vector<std::uint8_t> row;
    std::vector<std::uint64_t> bits, mismatch_rows, mismatch_columns;
    std::vector<std::uint32_t> key_of, scan_of;  // mismatches as found: key bits, scan index
    std::vector<std::uint64_t> keys, scratch;
    std::vector<std::size_t> live;  // padded positions of the mismatches still unresolved
    RelaxScratch relax;
};

// Orders the collected mismatches: key descending, scan position ascending, as one sortable integer
// ((max key - key) << index bits | scan position). Scan positions are bit-packed coordinates whose
// integer order is the scan order (x outer, then y, then z); index_bits is their width. Leaves the
// scan positions, in order, in ws.keys.
inline void order_mismatches(WarpWorkspace& ws, int index_bits) {
    std::uint32_t max_key = 0;
    for (const std::uint32_t k : ws.key_of) max_key = std::max(max_key, k);
    ws.keys.resize(ws.key_of.size());
    for (std::size_t i = 0; i < ws.key_of.size(); ++i)
        ws.keys[i] = (static_cast<std::uint64_t>(max_key - ws.key_of[i]) << index_bits) | ws.scan_of[i];
    sort_keys(ws.keys, ws.scratch, bit_width(max_key) + index_bits);
    const std::uint64_t index_mask = (std::uint64_t(1) << index_bits) - 1;
    for (auto& k : ws.keys) k &= index_mask;
}

// ws.padded = the (ny, nx) truth slice inside a one-pixel ring of background (plus one byte: see
// mark_neighbours).
inline void pad_slice_2d(const std::uint8_t* truth, index_t ny, index_t nx, WarpWorkspace& ws) {
    const index_t w2 = nx + 2;
    ws.padded.assign(static_cast<std::size_t>((ny + 2) * w2 + 1), 0);
    for (index_t y = 0; y < ny; ++y)
        std::memcpy(ws.padded.data() + (y + 1) * w2 + 1, truth + y * nx, static_cast<std::size_t>(nx));
}

// Padded images hold the pixel's value in bit 0 and, during the greedy passes, kDirty: a neighbour
// flipped since the pixel was last tested (first pass), and kLive: the pixel is on the list of
// mismatches (later passes).
constexpr std::uint8_t kDirty = 2;
constexpr std::uint8_t kLive = 4;

// kDirty in the first three bytes of a 4-byte word, 0 in the fourth, in either byte order.
inline std::uint32_t dirty_mark() {
    const std::uint8_t bytes[4] = {kDirty, kDirty, kDirty, 0};
    std::uint32_t mark;
    std::memcpy(&mark, bytes, sizeof mark);
    return mark;
}

// ORs bits (dirty_mark() or 0) into the three bytes left of, at and right of each of the rows (offsets
// from c, each the row's pixel above or below c, or c itself): one 4-byte read-modify-write per row,
// whose fourth byte is left unchanged (hence one byte of slack after a padded image).
template <std::size_t N>
inline void mark_neighbours(std::uint8_t* c, const index_t (&rows)[N], std::uint32_t bits) {
    for (const index_t row : rows) {
        std::uint32_t v;
        std::memcpy(&v, c + row - 1, sizeof v);
        v |= bits;
        std::memcpy(c + row - 1, &v, sizeof v);
    }
}

// The greedy passes (greedy_passes) walk the list while a walk costs little next to the work done:
// walks (list entries visited) may add up to kWalkBudget times the first list plus the flips so
// far. Realistic warps (ISBI slices: ~6 passes over a list a third of the first) finish within it
// at the speed of a plain walk; a warp that would walk far more (one flip per pass) switches to
// indexed passes, whose cost follows the flips.
constexpr std::size_t kWalkBudget = 4;

// One walk over live after the first pass: a pixel is re-tested only if a neighbour flipped since it
// was last tested (kDirty; its answer cannot have changed otherwise), flips mark their neighbours
// and leave the list, so later pixels in the same walk see them. Few pixels are dirty: branches
// predict well here. Returns the number of flips.
template <std::size_t N, class IsSimple>
inline std::size_t walking_pass(std::vector<std::size_t>& live, std::uint8_t* pad, const index_t (&rows)[N],
                                IsSimple is_simple, RelaxStats& stats) {
    const std::uint32_t mark = dirty_mark();
    std::size_t kept = 0;
    for (const std::size_t pos : live) {
        std::uint8_t* c = pad + pos;
        bool simple = false;
        if (*c & kDirty) {
            *c &= 1u;
            ++stats.tests;
            simple = is_simple(c);
            if (simple) {
                mark_neighbours(c, rows, mark);
                *c = static_cast<std::uint8_t>((*c ^ 1u) & 1u);
            }
        }
        live[kept] = pos;
        kept += !simple;
    }
    const std::size_t flips = live.size() - kept;
    stats.visits += live.size(), stats.flips += flips, ++stats.passes;
    live.resize(kept);
    return flips;
}

// The remaining passes without walking the list: the dirty pixels' list positions, in a
// PositionSet, are visited in list order; a flip makes its neighbours on the list dirty (their list
// positions from HashedPositions): those after the current position are tested later in the same
// pass, those before it in the next, exactly as walking would test them, and a pass ends when no
// dirty position is left after the current one. O(list + flips * neighbours * log64 list).
template <std::size_t N, class IsSimple>
inline void indexed_passes(std::vector<std::size_t>& live, std::uint8_t* pad, const index_t (&rows)[N],
                           IsSimple is_simple, RelaxScratch& s) {
    if (live.size() > std::numeric_limits<std::uint32_t>::max())
        throw std::length_error("greedy_passes: too many mismatches");
    index_t neighbours[3 * N - 1];  // the neighbourhood's offsets, centre excluded
    std::size_t n_neighbours = 0;
    for (const index_t row : rows)
        for (index_t dx = -1; dx <= 1; ++dx)
            if (row + dx != 0) neighbours[n_neighbours++] = row + dx;
    s.dirty.reset(live.size());
    s.index.reset(live.size());
    for (std::size_t k = 0; k < live.size(); ++k) {
        std::uint8_t* c = pad + live[k];
        if (*c & kDirty) s.dirty.insert(k);
        *c = static_cast<std::uint8_t>((*c & 1u) | kLive);
        s.index.insert(live[k], k);
    }
    s.stats.visits += live.size();
    constexpr std::size_t kResolved = ~std::size_t(0);  // list entries flipped here
    std::size_t k = s.dirty.next(0);
    if (k != PositionSet::npos) ++s.stats.passes;
    while (k != PositionSet::npos) {
        s.dirty.erase(k);
        std::uint8_t* c = pad + live[k];
        ++s.stats.tests;
        if (is_simple(c)) {
            *c = static_cast<std::uint8_t>((*c ^ 1u) & 1u);  // flipped: matches now, off the list
            live[k] = kResolved;
            ++s.stats.flips;
            for (std::size_t j = 0; j < n_neighbours; ++j)
                if (c[neighbours[j]] & kLive) s.dirty.insert(s.index.find(static_cast<std::size_t>(c + neighbours[j] - pad)));
        }
        std::size_t next = s.dirty.next(k + 1);
        if (next == PositionSet::npos && (next = s.dirty.next(0)) != PositionSet::npos) ++s.stats.passes;  // a new pass
        k = next;
    }
    std::size_t kept = 0;
    for (const std::size_t pos : live)
        if (pos != kResolved) live[kept++] = pos;
    live.resize(kept);
}

// Fiji's greedy passes over the padded image pad: walks live (padded positions in processing order),
// flipping every pixel that is_simple(pad + pos) (reading bit 0 of the neighbours) says is simple in
// the current state, until a pass flips nothing; live keeps the survivors in order. rows: offsets of
// the neighbourhood's rows (see mark_neighbours). One loop for 2D and 3D: the test is inlined per caller.
//
// The first pass tests every pixel; later ones only pixels with a flipped neighbour (walking_pass),
// until walking would cost more than walk_budget allows (kWalkBudget; the tests compare 0, always
// indexed, with unlimited walks), then indexed_passes: re-walking the whole
// list every pass made a path grown one pixel per pass (a serpentine whose probabilities rise away
// from the truth) quadratic in its length. Total O(list + flips * neighbours * log64 list).
template <std::size_t N, class IsSimple>
inline void greedy_passes(std::vector<std::size_t>& live, std::uint8_t* pad, const index_t (&rows)[N],
                          IsSimple is_simple, RelaxScratch& s, std::size_t walk_budget = kWalkBudget) {
    const std::uint32_t mark = dirty_mark();
    bool flipped = false;
    std::size_t kept = 0;
    for (const std::size_t pos : live) {  // branch-free: the test's outcome is unpredictable
        std::uint8_t* c = pad + pos;
        const bool simple = is_simple(c);
        mark_neighbours(c, rows, simple ? mark : 0u);
        *c = static_cast<std::uint8_t>((*c ^ static_cast<std::uint8_t>(simple)) & 1u);  // tested: not dirty
        flipped |= simple;
        live[kept] = pos;
        kept += !simple;
    }
    const std::size_t first_list = live.size();
    s.stats = RelaxStats{first_list, first_list, first_list - kept, 1};
    live.resize(kept);
    while (flipped && !live.empty()) {
        if (s.stats.visits + live.size() > walk_budget * (first_list + s.stats.flips)) {
            indexed_passes(live, pad, rows, is_simple, s);
            return;
        }
        flipped = walking_pass(live, pad, rows, is_simple, s.stats) > 0;
    }
}

// The simple-point tests greedy_passes inlines: the pixel at c of a padded image (row width w2; plane
// size plane in 3D), reading bit 0 of its neighbours. Members are values, not references: the flips
// are uint8 stores, which may alias anything reached through a reference, forcing reloads.
struct SimpleTest2D {
    index_t w2;
    const std::uint8_t* table = topology::simple_table_2d().data();
    bool operator()(const std::uint8_t* c) const {
        return table[(c[-w2 - 1] & 1) | (c[-w2] & 1) << 1 | (c[-w2 + 1] & 1) << 2 | (c[-1] & 1) << 3 | (c[1] & 1) << 4 |
                     (c[w2 - 1] & 1) << 5 | (c[w2] & 1) << 6 | (c[w2 + 1] & 1) << 7];
    }
};

struct SimpleTest3D {
    index_t offsets[26];
    SimpleTest3D(index_t w2, index_t plane) {
        const auto& adj = topology::adjacency_3d();
        for (int k = 0; k < 26; ++k) offsets[k] = adj.offset[k][0] * plane + adj.offset[k][1] * w2 + adj.offset[k][2];
    }
    bool operator()(const std::uint8_t* c) const {
        std::uint32_t code = 0;
        for (int k = 0; k < 26; ++k) code |= static_cast<std::uint32_t>(c[offsets[k]] & 1u) << k;
        return topology::is_simple_3d(code);
    }
};

// Copies n pixels' values (bit 0) out of a padded image.
inline void copy_values(const std::uint8_t* pad, std::size_t n, std::uint8_t* out) {
    for (std::size_t i = 0; i < n; ++i) out[i] = pad[i] & 1u;
}

// Fiji's greedy passes: ws.live holds the padded positions of the mismatches in processing order,
// ws.padded the padded truth (pad_slice_2d). Walks the list, flipping every pixel that is simple in
// the current state, until a pass flips nothing. warped (ny, nx) receives the result; survivors the
// row-major indices of the pixels still mismatched, in processing order.
inline void relax_slice_2d(WarpWorkspace& ws, index_t ny, index_t nx, std::uint8_t* warped,
                           std::vector<std::uint32_t>& survivors) {
    const index_t w2 = nx + 2;
    std::uint8_t* pad = ws.padded.data();
    const index_t rows[3] = {-w2, 0, w2};
    greedy_passes(ws.live, pad, rows, SimpleTest2D{w2}, ws.relax);
    for (index_t y = 0; y < ny; ++y) copy_values(pad + (y + 1) * w2 + 1, static_cast<std::size_t>(nx), warped + y * nx);
    survivors.resize(ws.live.size());
    for (std::size_t i = 0; i < ws.live.size(); ++i) {  // padded position -> row-major index
        const auto pos = static_cast<std::uint32_t>(ws.live[i]);
        const std::uint32_t row = pos / static_cast<std::uint32_t>(w2);
        survivors[i] = static_cast<std::uint32_t>((row - 1) * nx + (pos - row * w2) - 1);
    }
}

// Warps slice z of the ground truth. truth, mask and warped are contiguous (ny, nx) buffers;
// mask may be null (warping allowed everywhere; else only where mask != 0, and only there are
// mismatches counted). target_row(y, words) writes the binarised proposal of row y as a bitmask.
// survivors receives the row-major indices of the pixels still mismatched, in processing order.
template <class P, class TargetRow>
void warp_slice_2d_with(const std::uint8_t* truth, const View3D<P>& proposal, index_t z, const std::uint8_t* mask,
                        double threshold, TargetRow&& target_row, WarpWorkspace& ws, std::uint8_t* warped,
                        std::vector<std::uint32_t>& survivors) {
    const index_t ny = proposal.ny, nx = proposal.nx, w2 = nx + 2;
    pad_slice_2d(truth, ny, nx, ws);
    // the mismatches as a bit matrix, row by row ...
    const index_t n_words = words_per_row(nx), column_words = words_per_row(ny);
    ws.mismatch_rows.resize(static_cast<std::size_t>(ny * n_words));
    ws.bits.resize(static_cast<std::size_t>(n_words));
    std::uint64_t* other = ws.bits.data();
    for (index_t y = 0; y < ny; ++y) {
        const std::uint8_t* trow = truth + y * nx;
        std::uint64_t* diff = ws.mismatch_rows.data() + y * n_words;
        target_row(y, diff);
        pack_greater(trow, nx, 0, other);
        for (index_t i = 0; i < n_words; ++i) diff[i] ^= other[i];
        if (mask) {
            pack_greater(mask + y * nx, nx, 0, other);
            for (index_t i = 0; i < n_words; ++i) diff[i] &= other[i];
        }
    }
    // ... then column by column: listed in Fiji's scan order (x outer, y inner), the mismatches need
    // a stable sort by key only. Sort items: (max key - key) << 32 | x << y_bits | y.
    ws.mismatch_columns.resize(static_cast<std::size_t>(nx * column_words));
    transpose_bits(ws.mismatch_rows.data(), ny, nx, ws.mismatch_columns.data());
    ws.key_of.clear();
    ws.scan_of.clear();
    const int y_bits = bit_width(static_cast<std::uint64_t>(ny - 1));
    for (index_t x = 0; x < nx; ++x)
        for_each_set_bit(ws.mismatch_columns.data() + x * column_words, ny, [&](index_t y) {
            ws.key_of.push_back(key_bits(proposal_value(proposal(z, y, x)), threshold));
            ws.scan_of.push_back(static_cast<std::uint32_t>(x << y_bits | y));
        });
    std::uint32_t max_key = 0;
    for (const std::uint32_t k : ws.key_of) max_key = std::max(max_key, k);
    ws.keys.resize(ws.key_of.size());
    for (std::size_t i = 0; i < ws.key_of.size(); ++i)
        ws.keys[i] = static_cast<std::uint64_t>(max_key - ws.key_of[i]) << 32 | ws.scan_of[i];
    sort_keys(ws.keys, ws.scratch, bit_width(max_key), 32);
    ws.live.resize(ws.keys.size());
    const std::uint64_t y_mask = (std::uint64_t(1) << y_bits) - 1;
    for (std::size_t i = 0; i < ws.keys.size(); ++i) {
        const std::uint64_t scan = ws.keys[i] & 0xFFFFFFFFull;
        ws.live[i] = static_cast<std::size_t>((static_cast<index_t>(scan & y_mask) + 1) * w2 + static_cast<index_t>(scan >> y_bits) + 1);
    }
    relax_slice_2d(ws, ny, nx, warped, survivors);
}

// warp_slice_2d_with the proposal binarised as p > threshold.
template <class P>
void warp_slice_2d(const std::uint8_t* truth, const View3D<P>& proposal, index_t z, const std::uint8_t* mask,
                   double threshold, WarpWorkspace& ws, std::uint8_t* warped, std::vector<std::uint32_t>& survivors) {
    warp_slice_2d_with(truth, proposal, z, mask, threshold, ThresholdedRows<P>(proposal, z, threshold, ws.row), ws,
                       warped, survivors);
}

// Native 3D warp of a whole (nz, ny, nx) volume; buffers are contiguous (nz, ny, nx).
template <class P>
void warp_volume_3d(const std::uint8_t* truth, const View3D<P>& proposal, const std::uint8_t* mask,
                    double threshold, WarpWorkspace& ws, std::uint8_t* warped, std::vector<std::uint64_t>& survivors) {
    const index_t nz = proposal.nz, ny = proposal.ny, nx = proposal.nx;
    const index_t w2 = nx + 2, plane = (ny + 2) * w2;
    ws.padded.assign(static_cast<std::size_t>((nz + 2) * plane + 1), 0);  // + 1: see mark_neighbours
    std::uint8_t* pad = ws.padded.data();
    ws.key_of.clear();
    ws.scan_of.clear();
    const Above<P> above(threshold);
    const int z_bits = bit_width(static_cast<std::uint64_t>(nz - 1)), y_bits = bit_width(static_cast<std::uint64_t>(ny - 1));
    const int index_bits = z_bits + y_bits + bit_width(static_cast<std::uint64_t>(nx - 1));
    if (index_bits > 32) throw std::length_error("warp_volume_3d: volume too large for 32-bit scan positions");
    for (index_t z = 0; z < nz; ++z)
        for (index_t y = 0; y < ny; ++y) {
            const char* prow = proposal.row(z, y);
            const index_t base = (z * ny + y) * nx;
            std::memcpy(pad + (z + 1) * plane + (y + 1) * w2 + 1, truth + base, static_cast<std::size_t>(nx));
            for (index_t x = 0; x < nx; ++x) {
                const P value = proposal.at_row(prow, x);
                if (above(value) != (truth[base + x] != 0) && (!mask || mask[base + x])) {
                    ws.key_of.push_back(key_bits(proposal_value(value), threshold));
                    ws.scan_of.push_back(static_cast<std::uint32_t>((x << y_bits | y) << z_bits | z));
                }
            }
        }
    order_mismatches(ws, index_bits);
    ws.live.resize(ws.keys.size());
    for (std::size_t i = 0; i < ws.keys.size(); ++i) {
        const std::uint64_t scan = ws.keys[i];
        const auto z = static_cast<index_t>(scan & ((std::uint64_t(1) << z_bits) - 1));
        const auto y = static_cast<index_t>((scan >> z_bits) & ((std::uint64_t(1) << y_bits) - 1));
        const auto x = static_cast<index_t>(scan >> (z_bits + y_bits));
        ws.live[i] = static_cast<std::size_t>((z + 1) * plane + (y + 1) * w2 + x + 1);
    }
    const index_t rows[9] = {-plane - w2, -plane, -plane + w2, -w2, 0, w2, plane - w2, plane, plane + w2};
    greedy_passes(ws.live, pad, rows, SimpleTest3D(w2, plane), ws.relax);
    for (index_t z = 0; z < nz; ++z)
        for (index_t y = 0; y < ny; ++y)
            copy_values(pad + (z + 1) * plane + (y + 1) * w2 + 1, static_cast<std::size_t>(nx), warped + (z * ny + y) * nx);
    survivors.resize(ws.live.size());
    for (std::size_t i = 0; i < ws.live.size(); ++i) {
        const auto pos = static_cast<index_t>(ws.live[i]);
        const index_t z = pos / plane - 1, y = (pos % plane) / w2 - 1, x = pos % w2 - 1;
        survivors[i] = static_cast<std::uint64_t>((z * ny + y) * nx + x);
    }
}

}  // namespace unetsdk
