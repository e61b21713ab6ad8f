// Sparse contingency table of two label images over 64-bit label values, with no dense label x label
// matrix: labels are compared by value bits (callers map bits back to their dtype). Any shape and
// byte strides.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "thread_pool.hpp"

namespace unetsdk {

// Open-addressing hash map from uint64 keys to V (linear probing, power-of-two capacity).
template <class V>
class HashMap64 {
public:
    HashMap64() { rehash(64); }

    // Returns the slot of key, inserting it with value init if absent.
    V& at_or_insert(std::uint64_t key, const V& init, bool& inserted) {
        if ((size_ + 1) * 2 > keys_.size()) rehash(keys_.size() * 2);
        std::size_t i = mix(key) & mask_;
        while (used_[i]) {
            if (keys_[i] == key) {
                inserted = false;
                return values_[i];
            }
            i = (i + 1) & mask_;
        }
        used_[i] = 1, keys_[i] = key, values_[i] = init, ++size_;
        inserted = true;
        return values_[i];
    }

private:
    static std::size_t mix(std::uint64_t x) {  // splitmix64 finaliser
        x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27, x *= 0x94d049bb133111ebULL;
        return static_cast<std::size_t>(x ^ (x >> 31));
    }
    void rehash(std::size_t capacity) {
        std::vector<std::uint64_t> old_keys = std::move(keys_);
        std::vector<V> old_values = std::move(values_);
        std::vector<std::uint8_t> old_used = std::move(used_);
        keys_.assign(capacity, 0), values_.assign(capacity, V{}), used_.assign(capacity, 0);
        mask_ = capacity - 1, size_ = 0;
        bool inserted;
        for (std::size_t i = 0; i < old_keys.size(); ++i)
            if (old_used[i]) at_or_insert(old_keys[i], old_values[i], inserted);
    }
    std::vector<std::uint64_t> keys_;
    std::vector<V> values_;
    std::vector<std::uint8_t> used_;
    std::size_t mask_ = 0, size_ = 0;
};

struct Contingency {
    std::vector<std::uint64_t> truth_values, proposal_values;  // label bits, sorted by label value
    std::vector<std::uint32_t> rows, cols;                     // indices into those, per nonzero entry
    std::vector<std::int64_t> counts;                          // entries sorted by (row, col)
    std::vector<std::int64_t> truth_sizes, proposal_sizes;     // pixels per label (row / column sums)
};

namespace detail {

// Axes reordered so the last one has the smallest truth stride; contiguous axes merged.
struct Layout {
    std::vector<std::int64_t> shape, sa, sb;
    std::int64_t size() const {
        std::int64_t n = 1;
        for (const auto d : shape) n *= d;
        return n;
    }
};

inline Layout plan_layout(const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& sa,
                          const std::vector<std::int64_t>& sb) {
    std::vector<std::size_t> axes(shape.size());
    std::iota(axes.begin(), axes.end(), 0);
    std::stable_sort(axes.begin(), axes.end(), [&](std::size_t i, std::size_t j) {
        return std::llabs(sa[i]) > std::llabs(sa[j]);
    });
    Layout out;
    for (const std::size_t ax : axes) {
        if (shape[ax] == 1) continue;
        if (!out.shape.empty() && out.sa.back() == sa[ax] * shape[ax] && out.sb.back() == sb[ax] * shape[ax]) {
            out.shape.back() *= shape[ax];  // previous axis steps exactly over this one: merge
            out.sa.back() = sa[ax], out.sb.back() = sb[ax];
            continue;
        }
        out.shape.push_back(shape[ax]), out.sa.push_back(sa[ax]), out.sb.push_back(sb[ax]);
    }
    if (out.shape.empty()) out.shape = {1}, out.sa = {0}, out.sb = {0};
    return out;
}

// fn(a_value, b_value) for the elements of rows [row0, row1) of the layout (rows = all axes but the
// last), reading both arrays in the same order.
template <class A, class B, class Fn>
void for_each_pair(const char* a, const char* b, const Layout& lay, std::int64_t row0, std::int64_t row1, Fn&& fn) {
    const std::size_t d = lay.shape.size();
    const std::int64_t inner = lay.shape[d - 1], step_a = lay.sa[d - 1], step_b = lay.sb[d - 1];
    for (std::int64_t r = row0; r < row1; ++r) {
        std::int64_t oa = 0, ob = 0, rem = r;
        for (std::size_t k = d - 1; k-- > 0;) {
            const std::int64_t i = rem % lay.shape[k];
            rem /= lay.shape[k];
            oa += i * lay.sa[k], ob += i * lay.sb[k];
        }
        const char* pa = a + oa;
        const char* pb = b + ob;
        for (std::int64_t x = 0; x < inner; ++x, pa += step_a, pb += step_b) {
            A va;
            B vb;
            std::memcpy(&va, pa, sizeof va);
            std::memcpy(&vb, pb, sizeof vb);
            fn(va, vb);
        }
    }
}

// Label bits -> an unsigned key that orders like the label values (signed types: flip the sign bit).
template <class T>
inline std::uint64_t order_key(T bits, bool is_signed) {
    return static_cast<std::uint64_t>(is_signed ? static_cast<T>(bits ^ (T(1) << (sizeof(T) * 8 - 1))) : bits);
}

// Value -> dense id in first-seen order: a direct table over the value range when that range is
// small (the usual case: labels 0..n), else a hash map. ranks() renumbers the ids in value order.
template <class T>
class DenseIds {
public:
    DenseIds(std::uint64_t lo, std::uint64_t hi, std::uint64_t n_elements, bool is_signed)
        : lo_(lo), signed_(is_signed), direct_(hi - lo <= n_elements + 65536) {
        if (direct_) table_.assign(static_cast<std::size_t>(hi - lo + 1), ~0u);
    }
    std::uint32_t id(T v) {
        if (direct_) {
            std::uint32_t& slot = table_[static_cast<std::size_t>(order_key(v, signed_) - lo_)];
            if (slot == ~0u) {
                slot = static_cast<std::uint32_t>(values_.size());
                values_.push_back(static_cast<std::uint64_t>(v));
            }
            return slot;
        }
        bool inserted;
        std::uint32_t& slot = hashed_.at_or_insert(static_cast<std::uint64_t>(v), static_cast<std::uint32_t>(values_.size()), inserted);
        if (inserted) values_.push_back(static_cast<std::uint64_t>(v));
        return slot;
    }
    // rank[first-seen id] = position in value order; sorted receives the label bits in value order.
    void ranks(std::vector<std::uint32_t>& rank, std::vector<std::uint64_t>& sorted) const {
        rank.resize(values_.size());
        sorted.clear();
        sorted.reserve(values_.size());
        if (direct_) {
            for (const std::uint32_t id : table_)  // the table is in value order
                if (id != ~0u) rank[id] = static_cast<std::uint32_t>(sorted.size()), sorted.push_back(values_[id]);
            return;
        }
        std::vector<std::uint32_t> order(values_.size());
        std::iota(order.begin(), order.end(), 0u);
        std::sort(order.begin(), order.end(), [&](std::uint32_t x, std::uint32_t y) {
            return order_key(static_cast<T>(values_[x]), signed_) < order_key(static_cast<T>(values_[y]), signed_);
        });
        for (const std::uint32_t id : order) rank[id] = static_cast<std::uint32_t>(sorted.size()), sorted.push_back(values_[id]);
    }

private:
    std::uint64_t lo_;
    bool signed_, direct_;
    std::vector<std::uint32_t> table_;
    HashMap64<std::uint32_t> hashed_;
    std::vector<std::uint64_t> values_;
};

struct PairRun {
    std::uint32_t a, b;
    std::uint64_t length;
};

}  // namespace detail

// Contingency table of label arrays a (truth) and b (proposal) with equal shape, read as unsigned
// integers A and B of the labels' widths (a_signed / b_signed: order the labels as signed values).
//
// Two passes over the data: the value ranges (threads split the rows), then dense ids and runs of
// equal (truth, proposal) pairs (labels come in runs along rows). The runs are bucketed by truth id
// and each bucket's columns counted with a marker per proposal id: linear time, no hashing of pairs,
// and a canonical result (labels in value order, entries by (row, col)) whatever the memory layout.
template <class A, class B>
Contingency contingency_table(const char* a, const char* b, const std::vector<std::int64_t>& shape,
                              const std::vector<std::int64_t>& strides_a, const std::vector<std::int64_t>& strides_b,
                              bool a_signed, bool b_signed, unsigned threads) {
    const detail::Layout lay = detail::plan_layout(shape, strides_a, strides_b);
    const auto n = static_cast<std::uint64_t>(lay.size());
    std::int64_t n_rows = 1;
    for (std::size_t k = 0; k + 1 < lay.shape.size(); ++k) n_rows *= lay.shape[k];

    // pass 1: value ranges
    const unsigned workers = static_cast<unsigned>(std::min<std::int64_t>(resolve_threads(threads), n_rows));
    struct Range { std::uint64_t lo_a = ~0ULL, hi_a = 0, lo_b = ~0ULL, hi_b = 0; };
    std::vector<Range> ranges(workers);
    parallel_for(workers, workers, [&](std::size_t w, unsigned) {
        Range& r = ranges[w];
        detail::for_each_pair<A, B>(a, b, lay, n_rows * static_cast<std::int64_t>(w) / workers,
                                    n_rows * static_cast<std::int64_t>(w + 1) / workers, [&](A va, B vb) {
            const std::uint64_t ka = detail::order_key(va, a_signed), kb = detail::order_key(vb, b_signed);
            r.lo_a = std::min(r.lo_a, ka), r.hi_a = std::max(r.hi_a, ka);
            r.lo_b = std::min(r.lo_b, kb), r.hi_b = std::max(r.hi_b, kb);
        });
    });
    Range all;
    for (const Range& r : ranges)
        all.lo_a = std::min(all.lo_a, r.lo_a), all.hi_a = std::max(all.hi_a, r.hi_a),
        all.lo_b = std::min(all.lo_b, r.lo_b), all.hi_b = std::max(all.hi_b, r.hi_b);

    // pass 2: dense ids and runs of equal pairs
    detail::DenseIds<A> ids_a(all.lo_a, all.hi_a, n, a_signed);
    detail::DenseIds<B> ids_b(all.lo_b, all.hi_b, n, b_signed);
    std::vector<detail::PairRun> runs;
    A last_a{};
    B last_b{};
    std::uint32_t id_a = 0, id_b = 0;
    bool started = false;
    detail::for_each_pair<A, B>(a, b, lay, 0, n_rows, [&](A va, B vb) {
        if (started && va == last_a && vb == last_b) {
            ++runs.back().length;
            return;
        }
        if (!started || va != last_a) id_a = ids_a.id(va), last_a = va;
        if (!started || vb != last_b) id_b = ids_b.id(vb), last_b = vb;
        started = true;
        runs.push_back(detail::PairRun{id_a, id_b, 1});
    });

    Contingency out;
    std::vector<std::uint32_t> rank_a, rank_b;
    ids_a.ranks(rank_a, out.truth_values);
    ids_b.ranks(rank_b, out.proposal_values);
    const std::size_t na = out.truth_values.size(), nb = out.proposal_values.size();
    out.truth_sizes.assign(na, 0);
    out.proposal_sizes.assign(nb, 0);
    std::vector<std::size_t> start(na + 1, 0);
    for (auto& r : runs) {
        r.a = rank_a[r.a], r.b = rank_b[r.b];
        ++start[r.a + 1];
        out.truth_sizes[r.a] += static_cast<std::int64_t>(r.length);
        out.proposal_sizes[r.b] += static_cast<std::int64_t>(r.length);
    }
    for (std::size_t i = 0; i < na; ++i) start[i + 1] += start[i];
    std::vector<std::pair<std::uint32_t, std::uint64_t>> bucket(runs.size());
    {
        std::vector<std::size_t> fill(start.begin(), start.end() - 1);
        for (const auto& r : runs) bucket[fill[r.a]++] = {r.b, r.length};
    }
    std::vector<detail::PairRun>().swap(runs);

    // each truth id's columns, counted with a marker per proposal id
    std::vector<std::uint32_t> seen_in(nb, ~0u), slot_of(nb);
    std::vector<std::pair<std::uint32_t, std::int64_t>> row_entries;
    for (std::size_t r = 0; r < na; ++r) {
        row_entries.clear();
        for (std::size_t k = start[r]; k < start[r + 1]; ++k) {
            const std::uint32_t c = bucket[k].first;
            if (seen_in[c] != r) {
                seen_in[c] = static_cast<std::uint32_t>(r);
                slot_of[c] = static_cast<std::uint32_t>(row_entries.size());
                row_entries.emplace_back(c, 0);
            }
            row_entries[slot_of[c]].second += static_cast<std::int64_t>(bucket[k].second);
        }
        std::sort(row_entries.begin(), row_entries.end());
        for (const auto& [c, count] : row_entries) {
            out.rows.push_back(static_cast<std::uint32_t>(r));
            out.cols.push_back(c);
            out.counts.push_back(count);
        }
    }
    return out;
}

}  // namespace unetsdk
