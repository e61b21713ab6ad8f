// Sparse contingency table of two label images: one pass, hash maps over 64-bit label values, no
// dense label x label matrix. Labels are compared by value bits (an int32 -1 and a uint32 4294967295
// are the same key: callers map bits back to their dtype). Any shape and byte strides.
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
    std::size_t size() const { return size_; }
    void clear() {  // keeps the capacity
        std::fill(used_.begin(), used_.end(), std::uint8_t(0));
        size_ = 0;
    }

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
    template <class Fn>
    void for_each(Fn&& fn) const {
        for (std::size_t i = 0; i < keys_.size(); ++i)
            if (used_[i]) fn(keys_[i], values_[i]);
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
    std::vector<std::uint64_t> truth_values, proposal_values;  // label bits, index = dense id
    std::vector<std::uint32_t> rows, cols;                     // dense ids of each nonzero entry
    std::vector<std::int64_t> counts;
};

namespace detail {

// Dense relabelling of values in first-seen order, caching the previous value (labels come in runs).
struct Relabel {
    HashMap64<std::uint32_t> map;
    std::vector<std::uint64_t> values;
    std::uint64_t last_value = 0;
    std::uint32_t last_id = 0;
    bool has_last = false;

    std::uint32_t id(std::uint64_t v) {
        if (has_last && v == last_value) return last_id;
        bool inserted;
        std::uint32_t& slot = map.at_or_insert(v, static_cast<std::uint32_t>(values.size()), inserted);
        if (inserted) values.push_back(v);
        has_last = true, last_value = v, last_id = slot;
        return slot;
    }
};

struct PartialTable {
    Relabel truth, proposal;
    HashMap64<std::int64_t> pairs;  // (truth id << 32 | proposal id) -> count
};

// Axes reordered so the last one has the smallest truth stride; contiguous axes merged.
struct Layout {
    std::vector<std::int64_t> shape, sa, sb;
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

template <class A, class B>
void accumulate_rows(const char* a, const char* b, const Layout& lay, std::int64_t row0, std::int64_t row1,
                     PartialTable& t) {
    const std::size_t d = lay.shape.size();
    const std::int64_t inner = lay.shape[d - 1], ia = lay.sa[d - 1], ib = lay.sb[d - 1];
    std::uint64_t last_pair = ~0ULL;
    std::int64_t* last_slot = nullptr;
    for (std::int64_t r = row0; r < row1; ++r) {
        std::int64_t oa = 0, ob = 0, rem = r;
        for (std::size_t k = d - 1; k-- > 0;) {
            const std::int64_t i = rem % lay.shape[k];
            rem /= lay.shape[k];
            oa += i * lay.sa[k], ob += i * lay.sb[k];
        }
        const char* pa = a + oa;
        const char* pb = b + ob;
        for (std::int64_t x = 0; x < inner; ++x, pa += ia, pb += ib) {
            A va;
            B vb;
            std::memcpy(&va, pa, sizeof va);
            std::memcpy(&vb, pb, sizeof vb);
            const std::uint64_t key = static_cast<std::uint64_t>(t.truth.id(va)) << 32 | t.proposal.id(vb);
            if (key != last_pair) {
                bool inserted;
                last_slot = &t.pairs.at_or_insert(key, 0, inserted);
                last_pair = key;
            }
            ++*last_slot;
        }
    }
}

}  // namespace detail

// Contingency table of label arrays a (truth) and b (proposal) with equal shape. A and B are
// unsigned integer types of the labels' widths. Rows of the iteration space are split over threads
// and the partial tables merged by label value.
template <class A, class B>
Contingency contingency_table(const char* a, const char* b, const std::vector<std::int64_t>& shape,
                              const std::vector<std::int64_t>& strides_a, const std::vector<std::int64_t>& strides_b,
                              unsigned threads) {
    const detail::Layout lay = detail::plan_layout(shape, strides_a, strides_b);
    std::int64_t n_rows = 1;
    for (std::size_t k = 0; k + 1 < lay.shape.size(); ++k) n_rows *= lay.shape[k];
    const std::int64_t total = n_rows * lay.shape.back();
    const unsigned want = resolve_threads(threads);
    // Chunks of at least ~1M elements: below that, merging costs more than it saves.
    const std::int64_t max_chunks = std::max<std::int64_t>(1, std::min<std::int64_t>(n_rows, total / (1 << 20)));
    const auto chunks = static_cast<std::size_t>(std::min<std::int64_t>(want, max_chunks));
    std::vector<detail::PartialTable> parts(chunks);
    parallel_for(chunks, want, [&](std::size_t c, unsigned) {
        const std::int64_t r0 = n_rows * static_cast<std::int64_t>(c) / static_cast<std::int64_t>(chunks);
        const std::int64_t r1 = n_rows * static_cast<std::int64_t>(c + 1) / static_cast<std::int64_t>(chunks);
        detail::accumulate_rows<A, B>(a, b, lay, r0, r1, parts[c]);
    });
    Contingency out;
    if (chunks == 1) {
        detail::PartialTable& p = parts[0];
        out.truth_values = std::move(p.truth.values);
        out.proposal_values = std::move(p.proposal.values);
        out.rows.reserve(p.pairs.size()), out.cols.reserve(p.pairs.size()), out.counts.reserve(p.pairs.size());
        p.pairs.for_each([&](std::uint64_t key, std::int64_t count) {
            out.rows.push_back(static_cast<std::uint32_t>(key >> 32));
            out.cols.push_back(static_cast<std::uint32_t>(key & 0xFFFFFFFFu));
            out.counts.push_back(count);
        });
        return out;
    }
    detail::Relabel truth, proposal;
    HashMap64<std::int64_t> pairs;
    for (auto& p : parts) {
        p.pairs.for_each([&](std::uint64_t key, std::int64_t count) {
            const std::uint32_t i = truth.id(p.truth.values[key >> 32]);
            const std::uint32_t j = proposal.id(p.proposal.values[key & 0xFFFFFFFFu]);
            bool inserted;
            pairs.at_or_insert(static_cast<std::uint64_t>(i) << 32 | j, 0, inserted) += count;
        });
    }
    out.truth_values = std::move(truth.values);
    out.proposal_values = std::move(proposal.values);
    pairs.for_each([&](std::uint64_t key, std::int64_t count) {
        out.rows.push_back(static_cast<std::uint32_t>(key >> 32));
        out.cols.push_back(static_cast<std::uint32_t>(key & 0xFFFFFFFFu));
        out.counts.push_back(count);
    });
    return out;
}

}  // namespace unetsdk
