// Fiji's mismatch order (warping.hpp: key float32(|p - th|) descending, ties in column-major scan
// order) for every threshold of a sweep from one sort per slice.
//
// At threshold th the mismatches are the truth-background pixels with p > th and the
// truth-foreground pixels with p <= th. Sorting each group once by p (background: p descending,
// foreground: p ascending; ties in scan order) makes each threshold's mismatches a prefix of its group,
// already in key order up to ties: the key is monotone in p on each side, but float32 rounding can give
// different p the same key, whose ties Fiji breaks by scan order. Each prefix is therefore cut into
// runs of equal key, a run out of scan order is re-sorted, and the two sides are merged.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "bitrows.hpp"
#include "views.hpp"
#include "warping.hpp"

namespace unetsdk {

// float32 of p (rounded to nearest, so monotone in p) as an unsigned integer in the same order.
inline std::uint32_t ordered_float_bits(double p) {
    const float f = static_cast<float>(p);
    std::uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

inline float float_from_ordered_bits(std::uint32_t ordered) {
    const std::uint32_t bits = (ordered & 0x80000000u) ? (ordered & 0x7FFFFFFFu) : ~ordered;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// One slice's mismatch candidates, each (sort value << 32 | scan position), scan position = x << y_bits | y.
// The sort value is p's float32; float64 proposals also keep each candidate's exact p, in the same order.
struct SweepCandidates {
    std::vector<std::uint64_t> above;  // truth background, p > lowest threshold; p descending
    std::vector<std::uint64_t> below;  // truth foreground, p <= highest threshold; p ascending
    std::vector<double> above_p, below_p;  // float64 proposals only
};

inline int scan_y_bits(index_t ny) { return bit_width(static_cast<std::uint64_t>(ny - 1)); }

struct SweepCandidateScratch {
    std::vector<std::uint64_t> sort, fg, high, rows_above, rows_below, columns_above, columns_below;
};

// Lists and sorts slice z's candidates. levels: (ny, nx) counts of thresholds exceeded (p > t_k <=>
// level > k); the sweep's warping thresholds are t_0 .. t_{n_warp-1} (n_warp >= 1). The candidates
// are found as bit rows, transposed to columns and read column by column (scan order).
template <class P>
void sweep_candidates(const std::uint8_t* truth, const View3D<P>& proposal, index_t z, const std::uint8_t* levels,
                      std::size_t n_warp, SweepCandidateScratch& s, SweepCandidates& out) {
    const index_t ny = proposal.ny, nx = proposal.nx;
    const int y_bits = scan_y_bits(ny);
    if (y_bits + bit_width(static_cast<std::uint64_t>(nx - 1)) > 32)
        throw std::length_error("sweep_candidates: slice too large for 32-bit scan positions");
    const index_t row_words = words_per_row(nx), column_words = words_per_row(ny);
    s.fg.resize(static_cast<std::size_t>(row_words));
    s.high.resize(static_cast<std::size_t>(row_words));
    s.rows_above.resize(static_cast<std::size_t>(ny * row_words));
    s.rows_below.resize(static_cast<std::size_t>(ny * row_words));
    for (index_t y = 0; y < ny; ++y) {
        std::uint64_t* above = s.rows_above.data() + y * row_words;
        std::uint64_t* below = s.rows_below.data() + y * row_words;
        pack_greater(truth + y * nx, nx, 0, s.fg.data());
        pack_greater(levels + y * nx, nx, 0, above);  // p > t_0
        pack_greater(levels + y * nx, nx, static_cast<std::uint8_t>(n_warp - 1), s.high.data());  // p > t_{n_warp-1}
        for (index_t i = 0; i < row_words; ++i) {
            above[i] &= ~s.fg[static_cast<std::size_t>(i)];
            below[i] = s.fg[static_cast<std::size_t>(i)] & ~s.high[static_cast<std::size_t>(i)];
        }
    }
    s.columns_above.resize(static_cast<std::size_t>(nx * column_words));
    s.columns_below.resize(static_cast<std::size_t>(nx * column_words));
    transpose_bits(s.rows_above.data(), ny, nx, s.columns_above.data());
    transpose_bits(s.rows_below.data(), ny, nx, s.columns_below.data());
    out.above.clear();
    out.below.clear();
    for (index_t x = 0; x < nx; ++x) {
        const auto list = [&](const std::uint64_t* column, bool above, std::vector<std::uint64_t>& items) {
            for_each_set_bit(column + x * column_words, ny, [&](index_t y) {
                const std::uint32_t order = ordered_float_bits(proposal_value(proposal(z, y, x)));
                const std::uint64_t scan = static_cast<std::uint64_t>(x) << y_bits | static_cast<std::uint64_t>(y);
                items.push_back(static_cast<std::uint64_t>(above ? ~order : order) << 32 | scan);
            });
        };
        list(s.columns_above.data(), true, out.above);
        list(s.columns_below.data(), false, out.below);
    }
    sort_keys(out.above, s.sort, 32, 32);  // stable: ties stay in scan order
    sort_keys(out.below, s.sort, 32, 32);
    if constexpr (std::is_same_v<P, double>) {  // read once here, not at every threshold
        const std::uint64_t y_mask = (std::uint64_t(1) << y_bits) - 1;
        const auto exact = [&](const std::vector<std::uint64_t>& items, std::vector<double>& p) {
            p.resize(items.size());
            for (std::size_t k = 0; k < items.size(); ++k)
                p[k] = proposal(z, static_cast<index_t>(items[k] & y_mask), static_cast<index_t>((items[k] & 0xFFFFFFFFu) >> y_bits));
        };
        exact(out.above, out.above_p);
        exact(out.below, out.below_p);
    }
}

struct SweepOrderScratch {
    std::vector<std::uint64_t> above, below, group;  // (~key << 32 | scan): ascending = Fiji's order
};

// Fiji's processing order at threshold th of the mismatches of the slice whose candidates are c, as
// padded positions (row width nx + 2) in live.
template <class P>
void sweep_mismatch_order(const SweepCandidates& c, const View3D<P>& proposal, double th,
                          SweepOrderScratch& s, std::vector<std::size_t>& live) {
    const index_t ny = proposal.ny, nx = proposal.nx, w2 = nx + 2;
    const int y_bits = scan_y_bits(ny);
    const std::uint64_t y_mask = (std::uint64_t(1) << y_bits) - 1;
    const std::uint32_t th_order = ordered_float_bits(th);
    // One side: the candidates that mismatch at th (a prefix, up to the candidates sharing th's
    // float32) as (~key << 32 | scan). The key is monotone in p, so the prefix is in key order but for
    // runs of equal key that span several p, which are re-sorted into scan order. float64 values that
    // share a float32 come in scan order rather than p order: each such group is sorted first.
    const auto side = [&](const std::vector<std::uint64_t>& items, const std::vector<double>& exact_p, bool above,
                          std::vector<std::uint64_t>& out) {
        out.clear();
        std::size_t block = 0;  // start of the current run of equal keys
        bool block_sorted = true;
        const auto append = [&](std::uint64_t value) {
            if (!out.empty() && (out.back() >> 32) != (value >> 32)) {
                if (!block_sorted) std::sort(out.begin() + static_cast<std::ptrdiff_t>(block), out.end());
                block = out.size(), block_sorted = true;
            } else if (!out.empty() && value < out.back()) {
                block_sorted = false;
            }
            out.push_back(value);
        };
        const auto value_of = [&](double p, std::uint64_t item) {
            return static_cast<std::uint64_t>(~key_bits(p, th)) << 32 | (item & 0xFFFFFFFFu);
        };
        for (std::size_t k = 0; k < items.size();) {
            const auto item_order = static_cast<std::uint32_t>(items[k] >> 32);
            const std::uint32_t order = above ? ~item_order : item_order;
            if (above ? order < th_order : order > th_order) break;  // p beyond th on the other side
            if constexpr (std::is_same_v<P, double>) {
                s.group.clear();
                for (; k < items.size() && static_cast<std::uint32_t>(items[k] >> 32) == item_order; ++k)
                    if ((exact_p[k] > th) == above) s.group.push_back(value_of(exact_p[k], items[k]));  // else: p and th share a float32
                if (!std::is_sorted(s.group.begin(), s.group.end())) std::sort(s.group.begin(), s.group.end());
                for (const std::uint64_t value : s.group) append(value);
            } else {
                const auto p = static_cast<double>(float_from_ordered_bits(order));
                if ((p > th) == above) append(value_of(p, items[k]));  // else: p and th share a float32
                ++k;
            }
        }
        if (!block_sorted) std::sort(out.begin() + static_cast<std::ptrdiff_t>(block), out.end());
    };
    side(c.above, c.above_p, true, s.above);
    side(c.below, c.below_p, false, s.below);
    live.resize(s.above.size() + s.below.size());
    const std::uint64_t* a = s.above.data();
    const std::uint64_t* a_end = a + s.above.size();
    const std::uint64_t* b = s.below.data();
    const std::uint64_t* b_end = b + s.below.size();
    for (std::size_t& pos : live) {  // merge of the two sides (values are distinct: scans differ)
        const bool take_a = b == b_end || (a != a_end && *a < *b);
        const auto scan = static_cast<std::uint32_t>(take_a ? *a++ : *b++);
        pos = static_cast<std::size_t>((static_cast<index_t>(scan & y_mask) + 1) * w2 + static_cast<index_t>(scan >> y_bits) + 1);
    }
}

}  // namespace unetsdk
