// Connected-component labelling of binary images by runs (run-length union-find).
//
// Foreground runs of each image line are united with the touching runs of the lines before it: the
// previous line (2D) and the same line of the previous slice (3D) for face connectivity (4 / 6), plus
// diagonal contacts and the previous slice's lines y-1 and y+1 for full connectivity (8 / 26). Work is
// proportional to the number of runs, not of pixels, which keeps membrane images cheap. Labels are
// 1..n in raster order of first appearance; 0 is background. 32-bit labels: no wrap-around.
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
    std::vector<std::uint64_t> words_scratch;   // the line being labelled, as bits

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
    out.words_scratch.resize(static_cast<std::size_t>(words_per_row(nx)));
    for (index_t z = 0; z < nz; ++z)
        for (index_t y = 0; y < ny; ++y) {
            const index_t l = z * ny + y;
            row_bits(l, out.words_scratch.data());
            out.line_start[l] = out.runs.size();
            for_each_run_bits(out.words_scratch.data(), nx, [&](index_t x0, index_t x1) {
                const auto id = static_cast<std::uint32_t>(parent.size());
                Run& run = out.runs.emplace_back();  // fields stored in place: no 12-byte temporary
                run.x0 = static_cast<std::int32_t>(x0), run.x1 = static_cast<std::int32_t>(x1), run.label = id;
                parent.push_back(id);
            });
            out.line_start[l + 1] = out.runs.size();
            const Run* cur = out.runs.data() + out.line_start[l];
            const Run* cur_end = out.runs.data() + out.runs.size();
            const auto unite_line = [&](index_t p) {
                detail::unite_overlapping(parent, cur, cur_end, out.runs.data() + out.line_start[p],
                                          out.runs.data() + out.line_start[p + 1], slack);
            };
            if (y > 0) unite_line(l - 1);
            if (volumetric && z > 0) {
                unite_line(l - ny);
                if (full && y > 0) unite_line(l - ny - 1);
                if (full && y + 1 < ny) unite_line(l - ny + 1);
            }
        }
    // Roots are the earliest run of their component, so one raster pass numbers components in order.
    std::uint32_t count = 0;
    for (std::size_t i = 0; i < out.runs.size(); ++i) {
        const std::uint32_t root = detail::find_root(parent, static_cast<std::uint32_t>(i));
        out.runs[i].label = (root == i) ? ++count : out.runs[root].label;
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
