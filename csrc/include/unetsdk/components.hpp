// Connected-component labelling of binary images by runs (run-length union-find).
//
// Foreground runs of each image line are united with the touching runs of the lines before it: the
// previous line (2D) and the same line of the previous slice (3D) for face connectivity (4 / 6), plus
// diagonal contacts and the previous slice's lines y-1 and y+1 for full connectivity (8 / 26). Work is
// proportional to the number of runs, not of pixels, which keeps membrane images cheap; runs and face
// contacts are found with word operations on the lines as bits. Labels are 1..n in raster order of
// first appearance; 0 is background. 32-bit labels: no wrap-around.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "bitrows.hpp"
#include "views.hpp"

namespace unetsdk {

struct Run {
    std::int32_t x0, x1;  // [x0, x1)
    std::uint32_t label;
};

struct RunLabels {
    index_t nz = 0, ny = 0, nx = 0;
    std::vector<Run> runs;
    std::vector<std::size_t> line_start;  // runs of line l = z*ny + y are [line_start[l], line_start[l+1])
    std::uint32_t count = 0;              // number of components
    std::vector<std::uint32_t> parent_scratch;  // union-find forest, reused between calls
    // Recent lines as bits (a ring of 2 lines, or of 2 slices in 3D): the line's pixels and its run
    // starts, and per word the number of run starts in the words before it.
    std::vector<std::uint64_t> words_scratch, starts_scratch;
    std::vector<std::uint32_t> rank_scratch;

    const Run* begin_line(index_t l) const { return runs.data() + line_start[l]; }
    const Run* end_line(index_t l) const { return runs.data() + line_start[l + 1]; }
};

namespace detail {

inline std::uint32_t find_root(std::vector<std::uint32_t>& parent, std::uint32_t a) {
    std::uint32_t root = a;
    while (parent[root] != root) root = parent[root];
    while (parent[a] != root) {
        const std::uint32_t next = parent[a];
        parent[a] = root;
        a = next;
    }
    return root;
}

inline void unite(std::vector<std::uint32_t>& parent, std::uint32_t a, std::uint32_t b) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a == b) return;
    if (a < b) parent[b] = a; else parent[a] = b;  // the earliest run stays root
}

// slack 0: runs touch if they share a column; slack 1: also diagonally. a are the runs of the line
// being labelled (their label field holds their own run id until unite() links them).
inline void unite_overlapping(std::vector<std::uint32_t>& parent, const Run* a, const Run* a_end,
                              const Run* b, const Run* b_end, int slack) {
    while (a != a_end && b != b_end) {
        if (a->x0 < b->x1 + slack && b->x0 < a->x1 + slack) {
            if (parent[a->label] == a->label && a->label > b->label)
                parent[a->label] = find_root(parent, b->label);  // a fresh run joins directly
            else
                unite(parent, a->label, b->label);
        }
        if (a->x1 < b->x1) ++a; else ++b;
    }
}

// Face connectivity between two lines given as bits: runs touch if they share a column, and each
// stretch of columns set in both lies in exactly one run of each line. So the stretches, found with
// word operations, name the touching pairs: the run of column x in a line is its number of run starts
// up to x. a_* describe the line being labelled, b_* the other; *_first is the id of the line's first run.
inline void unite_face(std::vector<std::uint32_t>& parent, index_t n_words, const std::uint64_t* a_words, const std::uint64_t* a_starts,
                       const std::uint32_t* a_rank, std::uint32_t a_first, const std::uint64_t* b_words,
                       const std::uint64_t* b_starts, const std::uint32_t* b_rank, std::uint32_t b_first) {
    std::uint64_t carry = 0;  // column 64 i - 1 is in both lines
    for (index_t i = 0; i < n_words; ++i) {
        const std::uint64_t both = a_words[i] & b_words[i];
        std::uint64_t stretches = both & ~(both << 1 | carry);
        carry = both >> 63;
        for (; stretches; stretches &= stretches - 1) {
            const int bit = count_trailing_zeros(stretches);
            const std::uint64_t upto = ~std::uint64_t(0) >> (63 - bit);  // bits 0 .. bit
            const std::uint32_t a = a_first + a_rank[i] + static_cast<std::uint32_t>(popcount(a_starts[i] & upto)) - 1;
            const std::uint32_t b = b_first + b_rank[i] + static_cast<std::uint32_t>(popcount(b_starts[i] & upto)) - 1;
            if (parent[a] == a && a > b)
                parent[a] = find_root(parent, b);  // a fresh run joins directly
            else
                unite(parent, a, b);
        }
    }
}

}  // namespace detail

// Labels a binary (nz, ny, nx) image given line by line: row_bits(l, words) writes line
// l = z*ny + y as a bitmask (see bitrows.hpp).
// volumetric = false: each slice on its own (2D callers pass one slice); true: connected in 3D.
// full = false: 4- (2D) / 6-connectivity (3D); true: 8- / 26-connectivity.
template <class RowBits>
void label_runs_by_line(index_t nz, index_t ny, index_t nx, bool volumetric, RowBits&& row_bits, RunLabels& out,
                        bool full = false) {
    const int slack = full ? 1 : 0;
    out.nz = nz, out.ny = ny, out.nx = nx;
    out.runs.clear();
    out.line_start.assign(static_cast<std::size_t>(nz * ny + 1), 0);
    std::vector<std::uint32_t>& parent = out.parent_scratch;
    parent.clear();
    const index_t n_words = words_per_row(nx);
    const index_t ring = volumetric ? 2 * ny : 2;  // lines kept as bits
    out.words_scratch.resize(static_cast<std::size_t>(ring * n_words));
    out.starts_scratch.resize(static_cast<std::size_t>(ring * n_words));
    out.rank_scratch.resize(static_cast<std::size_t>(ring * n_words));
    const auto words_of = [&](index_t l) { return out.words_scratch.data() + (l % ring) * n_words; };
    const auto starts_of = [&](index_t l) { return out.starts_scratch.data() + (l % ring) * n_words; };
    const auto rank_of = [&](index_t l) { return out.rank_scratch.data() + (l % ring) * n_words; };
    for (index_t z = 0; z < nz; ++z)
        for (index_t y = 0; y < ny; ++y) {
            const index_t l = z * ny + y;
            std::uint64_t* words = words_of(l);
            std::uint64_t* starts = starts_of(l);
            std::uint32_t* rank = rank_of(l);
            row_bits(l, words);
            out.line_start[l] = out.runs.size();
            // runs from the bits where a run starts and where one ends (the column after its last)
            std::uint64_t carry = 0;
            std::uint32_t n_starts = 0;
            for (index_t i = 0; i < n_words; ++i) {
                const std::uint64_t w = words[i], before = w << 1 | carry;  // bit x: column x - 1
                carry = w >> 63;
                starts[i] = w & ~before;
                rank[i] = n_starts;
                n_starts += static_cast<std::uint32_t>(popcount(starts[i]));
            }
            const std::size_t first = out.runs.size();
            out.runs.resize(first + n_starts);
            parent.resize(first + n_starts);
            Run* line_runs = out.runs.data() + first;
            std::size_t k = 0, e = 0;
            carry = 0;
            for (index_t i = 0; i < n_words; ++i) {
                const std::uint64_t w = words[i], before = w << 1 | carry;
                carry = w >> 63;
                for (std::uint64_t b = starts[i]; b; b &= b - 1) line_runs[k++].x0 = static_cast<std::int32_t>(i * 64 + count_trailing_zeros(b));
                for (std::uint64_t b = ~w & before; b; b &= b - 1) line_runs[e++].x1 = static_cast<std::int32_t>(i * 64 + count_trailing_zeros(b));
            }
            if (e < k) line_runs[e].x1 = static_cast<std::int32_t>(nx);  // the last run reaches the line's end
            for (std::size_t r = 0; r < k; ++r) {
                const auto id = static_cast<std::uint32_t>(first + r);
                line_runs[r].label = id;
                parent[first + r] = id;
            }
            out.line_start[l + 1] = out.runs.size();
            const auto unite_line = [&](index_t p) {
                if (slack == 0) {
                    detail::unite_face(parent, n_words, words, starts, rank, static_cast<std::uint32_t>(first),
                                       words_of(p), starts_of(p), rank_of(p), static_cast<std::uint32_t>(out.line_start[p]));
                    return;
                }
                detail::unite_overlapping(parent, out.runs.data() + first, out.runs.data() + out.runs.size(),
                                          out.runs.data() + out.line_start[p], out.runs.data() + out.line_start[p + 1], slack);
            };
            if (y > 0) unite_line(l - 1);
            if (volumetric && z > 0) {
                unite_line(l - ny);
                if (full && y > 0) unite_line(l - ny - 1);
                if (full && y + 1 < ny) unite_line(l - ny + 1);
            }
        }
    // Every parent is an earlier run of the component (roots are their component's earliest run), so
    // one raster pass numbers components in order and gives each run its parent's final label.
    std::uint32_t count = 0;
    for (std::size_t i = 0; i < out.runs.size(); ++i) {
        const std::uint32_t up = parent[i];
        out.runs[i].label = (up == i) ? ++count : out.runs[up].label;
    }
    out.count = count;
}

// Labels the contiguous binary (nz, ny, nx) buffer fg (values 0 or 1).
inline void label_runs(const std::uint8_t* fg, index_t nz, index_t ny, index_t nx, bool volumetric, RunLabels& out,
                       bool full = false) {
    label_runs_by_line(nz, ny, nx, volumetric,
                       [&](index_t l, std::uint64_t* words) { pack_greater(fg + l * nx, nx, 0, words); }, out, full);
}

// Writes the labels of `rl` into a contiguous (nz, ny, nx) uint32 buffer.
inline void paint_labels(const RunLabels& rl, std::uint32_t* labels) {
    const index_t lines = rl.nz * rl.ny;
    for (index_t l = 0; l < lines; ++l) {
        std::uint32_t* row = labels + l * rl.nx;
        index_t x = 0;
        for (const Run* r = rl.begin_line(l); r != rl.end_line(l); ++r) {
            for (; x < r->x0; ++x) row[x] = 0;
            for (; x < r->x1; ++x) row[x] = r->label;
        }
        for (; x < rl.nx; ++x) row[x] = 0;
    }
}

}  // namespace unetsdk
