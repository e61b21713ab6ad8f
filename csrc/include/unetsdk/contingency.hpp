// Sparse contingency table of two label images over 64-bit label values, with no dense label x label
// matrix: labels are compared by value bits (callers map bits back to their dtype). Any shape and
// byte strides.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <utility>
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

// Allocator whose resize() leaves new elements uninitialised (for buffers that are written next).
template <class T>
struct UninitialisedAllocator : std::allocator<T> {
    template <class U>
    struct rebind {
        using other = UninitialisedAllocator<U>;
    };
    UninitialisedAllocator() = default;
    template <class U>
    UninitialisedAllocator(const UninitialisedAllocator<U>&) noexcept {}
    template <class U>
    void construct(U* p) noexcept {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... Args>
    void construct(U* p, Args&&... args) {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
};
template <class T>
using Buffer = std::vector<T, UninitialisedAllocator<T>>;

struct Contingency {
    std::vector<std::uint64_t> truth_values, proposal_values;  // label bits, sorted by label value
    Buffer<std::int64_t> rows, cols;                           // indices into those, per nonzero entry
    Buffer<std::int64_t> counts;                               // entries sorted by (row, col)
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

// Reads the elements [begin, end) of the layout (in its order) as contiguous segments of both arrays:
// fn(const A* a, const B* b, count). Segments of an array that is not contiguous along the last axis
// (or not aligned for its type) are copied into buf_a / buf_b first; contiguous ones are read in place.
template <class A, class B, class Fn>
void for_each_segment(const char* a, const char* b, const Layout& lay, std::int64_t begin, std::int64_t end,
                      std::vector<A>& buf_a, std::vector<B>& buf_b, Fn&& fn) {
    const std::size_t d = lay.shape.size();
    const std::int64_t inner = lay.shape[d - 1], step_a = lay.sa[d - 1], step_b = lay.sb[d - 1];
    const auto direct = [](const char* base, std::int64_t step, std::size_t size, std::size_t align) {
        return step == static_cast<std::int64_t>(size) && reinterpret_cast<std::uintptr_t>(base) % align == 0;
    };
    for (std::int64_t pos = begin; pos < end;) {
        std::int64_t row = pos / inner, x = pos % inner, oa = 0, ob = 0;
        const std::int64_t count = std::min(inner - x, end - pos);
        for (std::size_t k = d - 1; k-- > 0;) {
            const std::int64_t i = row % lay.shape[k];
            row /= lay.shape[k];
            oa += i * lay.sa[k], ob += i * lay.sb[k];
        }
        const char* pa = a + oa + x * step_a;
        const char* pb = b + ob + x * step_b;
        const auto gather = [count](const char* src, std::int64_t step, auto& buf) {
            buf.resize(static_cast<std::size_t>(count));
            for (std::int64_t k = 0; k < count; ++k) std::memcpy(&buf[static_cast<std::size_t>(k)], src + k * step, sizeof buf[0]);
            return buf.data();
        };
        const A* ra = direct(pa, step_a, sizeof(A), alignof(A)) ? reinterpret_cast<const A*>(pa) : gather(pa, step_a, buf_a);
        const B* rb = direct(pb, step_b, sizeof(B), alignof(B)) ? reinterpret_cast<const B*>(pb) : gather(pb, step_b, buf_b);
        fn(ra, rb, count);
        pos += count;
    }
}

// Label bits -> an unsigned key that orders like the label values (signed types: flip the sign bit).
// The map is its own inverse.
template <class T>
inline std::uint64_t order_key(T bits, bool is_signed) {
    return static_cast<std::uint64_t>(is_signed ? static_cast<T>(bits ^ (T(1) << (sizeof(T) * 8 - 1))) : bits);
}

// Label (as its order key) -> id. Direct when the value range is small (the usual case: labels 0..n):
// id = key - lo, ids in value order, thread-safe. Else a hash map giving ids in first-seen order (one
// thread only).
template <class T>
class LabelIds {
public:
    LabelIds(std::uint64_t lo, std::uint64_t hi, std::uint64_t n_elements, bool is_signed)
        : lo_(lo), span_(hi - lo), signed_(is_signed), direct_(hi - lo <= n_elements + 65536) {}
    bool direct() const { return direct_; }
    // ids are < capacity() (after all id() calls)
    std::size_t capacity() const { return direct_ ? static_cast<std::size_t>(span_) + 1 : keys_.size(); }
    std::uint32_t id_of_key(std::uint64_t key) {  // key: order_key of the label
        if (direct_) return static_cast<std::uint32_t>(key - lo_);
        bool inserted;
        std::uint32_t& slot = hashed_.at_or_insert(key, static_cast<std::uint32_t>(keys_.size()), inserted);
        if (inserted) keys_.push_back(key);
        return slot;
    }
    // Of the ids with size[id] > 0: rank[id] = position in value order (~0u for absent ids), order =
    // the ids in value order, sorted = their label bits.
    void ranks(const std::vector<std::int64_t>& size, std::vector<std::uint32_t>& rank, std::vector<std::uint32_t>& order,
               std::vector<std::uint64_t>& sorted) const {
        rank.assign(capacity(), ~0u);
        order.clear();
        if (direct_) {
            for (std::size_t id = 0; id < size.size(); ++id)
                if (size[id] > 0) order.push_back(static_cast<std::uint32_t>(id));
        } else {
            order.resize(keys_.size());
            std::iota(order.begin(), order.end(), 0u);
            std::sort(order.begin(), order.end(), [&](std::uint32_t x, std::uint32_t y) { return keys_[x] < keys_[y]; });
        }
        sorted.resize(order.size());
        for (std::size_t r = 0; r < order.size(); ++r) {
            const std::uint32_t id = order[r];
            rank[id] = static_cast<std::uint32_t>(r);
            const std::uint64_t key = direct_ ? lo_ + id : keys_[id];
            sorted[r] = order_key(static_cast<T>(key), signed_);
        }
    }

private:
    std::uint64_t lo_, span_;
    bool signed_, direct_;
    HashMap64<std::uint32_t> hashed_;
    std::vector<std::uint64_t> keys_;  // hashed: the key of each id
};

// Inputs below this many elements are counted by one thread: starting threads costs more.
constexpr std::int64_t kParallelElements = std::int64_t(1) << 19;
// Longest run stored as one (the rest continues in a new run): lengths fit 32 bits.
constexpr std::uint64_t kMaxRun = 0xFFFFFFFFull;

}  // namespace detail

// Scratch memory of contingency_table, kept between calls by callers that count many tables: fresh
// pages cost more than the counting itself on large inputs.
struct ContingencyWorkspace {
    std::vector<std::vector<std::uint64_t>> runs;                  // per thread
    std::vector<std::vector<std::uint32_t>> runs_of;               // per thread, per truth id
    std::vector<std::vector<std::int64_t>> size_a, size_b;         // per thread, per id
    std::vector<std::vector<std::uint32_t>> seen_in, slot_of;      // per thread, per proposal label
    Buffer<std::uint64_t> bucket;
};

// Contingency table of label arrays a (truth) and b (proposal) with equal shape, read as unsigned
// integers A and B of the labels' widths (a_signed / b_signed: order the labels as signed values).
//
// One pass over the data, each thread on its own block of elements, collects the runs of equal
// (truth, proposal) labels (labels come in runs along rows) and the label ranges; the runs' labels
// become ids (directly, or hashed when a range is too wide). The runs are bucketed by truth id
// and each bucket's columns counted with a marker per proposal id: linear time, no hashing of pairs
// when the label ranges are small, and a canonical result (labels in value order, entries by
// (row, col)) whatever the memory layout or the number of threads.
template <class A, class B>
Contingency contingency_table(const char* a, const char* b, const std::vector<std::int64_t>& shape,
                              const std::vector<std::int64_t>& strides_a, const std::vector<std::int64_t>& strides_b,
                              bool a_signed, bool b_signed, unsigned threads, ContingencyWorkspace* workspace = nullptr) {
    ContingencyWorkspace local;
    ContingencyWorkspace& ws = workspace ? *workspace : local;
    const detail::Layout lay = detail::plan_layout(shape, strides_a, strides_b);
    const std::int64_t n = lay.size();
    const unsigned workers = n < detail::kParallelElements ? 1u : resolve_threads(threads);

    // The one pass over the data: runs of equal (truth, proposal) labels and the label ranges, per
    // thread. A run is 3 words (truth key, proposal key, length) until its labels become ids, then 2
    // (truth id | proposal id << 32, length), rewritten in place.
    struct Range { std::uint64_t lo_a = ~0ULL, hi_a = 0, lo_b = ~0ULL, hi_b = 0; };
    std::vector<Range> ranges(workers);
    std::vector<std::vector<std::uint64_t>>& runs = ws.runs;
    if (runs.size() < workers) runs.resize(workers);
    parallel_for(workers, workers, [&](std::size_t w, unsigned) {
        const std::int64_t begin = n * static_cast<std::int64_t>(w) / workers;
        const std::int64_t end = n * static_cast<std::int64_t>(w + 1) / workers;
        std::vector<std::uint64_t>& out = runs[w];
        out.clear();
        out.reserve(static_cast<std::size_t>(std::min<std::int64_t>(end - begin, std::int64_t(1) << 22)) * 3);
        Range r;
        const auto flush = [&](A va, B vb, std::uint64_t length) {
            const std::uint64_t ka = detail::order_key(va, a_signed), kb = detail::order_key(vb, b_signed);
            r.lo_a = std::min(r.lo_a, ka), r.hi_a = std::max(r.hi_a, ka);
            r.lo_b = std::min(r.lo_b, kb), r.hi_b = std::max(r.hi_b, kb);
            for (; length > detail::kMaxRun; length -= detail::kMaxRun)
                out.push_back(ka), out.push_back(kb), out.push_back(detail::kMaxRun);
            out.push_back(ka), out.push_back(kb), out.push_back(length);
        };
        std::vector<A> buf_a;
        std::vector<B> buf_b;
        A last_a{};
        B last_b{};
        std::uint64_t length = 0;  // of the run (last_a, last_b); 0 before the first element
        detail::for_each_segment<A, B>(a, b, lay, begin, end, buf_a, buf_b, [&](const A* pa, const B* pb, std::int64_t count) {
            A run_a = last_a;  // locals: the loop keeps them in registers
            B run_b = last_b;
            std::uint64_t run_length = length;
            for (std::int64_t x = 0; x < count; ++x) {
                if (pa[x] == run_a && pb[x] == run_b) {
                    ++run_length;
                    continue;
                }
                if (run_length) flush(run_a, run_b, run_length);
                run_a = pa[x], run_b = pb[x], run_length = 1;
            }
            last_a = run_a, last_b = run_b, length = run_length;
        });
        if (length) flush(last_a, last_b, length);
        ranges[w] = r;
    });
    Range all;
    for (const Range& r : ranges)
        all.lo_a = std::min(all.lo_a, r.lo_a), all.hi_a = std::max(all.hi_a, r.hi_a),
        all.lo_b = std::min(all.lo_b, r.lo_b), all.hi_b = std::max(all.hi_b, r.hi_b);

    // label ids of the runs; label sizes and runs per truth id, per thread
    detail::LabelIds<A> ids_a(all.lo_a, all.hi_a, static_cast<std::uint64_t>(n), a_signed);
    detail::LabelIds<B> ids_b(all.lo_b, all.hi_b, static_cast<std::uint64_t>(n), b_signed);
    const auto to_ids = [&](std::size_t w) {
        std::vector<std::uint64_t>& v = runs[w];
        const std::size_t count = v.size() / 3;
        for (std::size_t k = 0; k < count; ++k) {
            const std::uint64_t id_a = ids_a.id_of_key(v[3 * k]), id_b = ids_b.id_of_key(v[3 * k + 1]), length = v[3 * k + 2];
            v[2 * k] = id_a | id_b << 32, v[2 * k + 1] = length;
        }
        v.resize(2 * count);
    };
    if (ids_a.direct() && ids_b.direct())
        parallel_for(workers, workers, [&](std::size_t w, unsigned) { to_ids(w); });
    else
        for (unsigned w = 0; w < workers; ++w) to_ids(w);  // hashed ids are assigned by one thread
    const std::size_t na = ids_a.capacity(), nb = ids_b.capacity();
    auto& runs_of = ws.runs_of;
    auto& size_a = ws.size_a;
    auto& size_b = ws.size_b;
    if (runs_of.size() < workers) runs_of.resize(workers), size_a.resize(workers), size_b.resize(workers);
    parallel_for(workers, workers, [&](std::size_t w, unsigned) {
        runs_of[w].assign(na, 0), size_a[w].assign(na, 0), size_b[w].assign(nb, 0);
        const std::vector<std::uint64_t>& v = runs[w];
        for (std::size_t k = 0; k < v.size(); k += 2) {
            const auto id_a = static_cast<std::uint32_t>(v[k]), id_b = static_cast<std::uint32_t>(v[k] >> 32);
            ++runs_of[w][id_a];
            size_a[w][id_a] += static_cast<std::int64_t>(v[k + 1]);
            size_b[w][id_b] += static_cast<std::int64_t>(v[k + 1]);
        }
    });
    for (unsigned w = 1; w < workers; ++w) {
        for (std::size_t i = 0; i < na; ++i) size_a[0][i] += size_a[w][i];
        for (std::size_t j = 0; j < nb; ++j) size_b[0][j] += size_b[w][j];
    }
    Contingency out;
    std::vector<std::uint32_t> rank_a, rank_b, order_a, order_b;
    ids_a.ranks(size_a[0], rank_a, order_a, out.truth_values);
    ids_b.ranks(size_b[0], rank_b, order_b, out.proposal_values);
    out.truth_sizes.resize(order_a.size());
    out.proposal_sizes.resize(order_b.size());
    for (std::size_t r = 0; r < order_a.size(); ++r) out.truth_sizes[r] = size_a[0][order_a[r]];
    for (std::size_t r = 0; r < order_b.size(); ++r) out.proposal_sizes[r] = size_b[0][order_b[r]];

    // Bucket the runs by truth label (in value order) as (proposal rank, length): thread w writes its
    // runs of label r from start[r] + the runs of r of the threads before it (32-bit offsets).
    std::size_t n_runs = 0;
    for (const auto& v : runs) n_runs += v.size() / 2;
    if (n_runs > 0xFFFFFFFFull) throw std::length_error("contingency_table: more than 2^32 label runs");
    std::vector<std::size_t> start(order_a.size() + 1, 0);
    for (std::size_t r = 0; r < order_a.size(); ++r) {
        std::size_t total = 0;
        for (unsigned w = 0; w < workers; ++w) {
            const std::uint32_t k = runs_of[w][order_a[r]];
            runs_of[w][order_a[r]] = static_cast<std::uint32_t>(start[r] + total);  // now: this thread's offset
            total += k;
        }
        start[r + 1] = start[r] + total;
    }
    Buffer<std::uint64_t>& bucket = ws.bucket;
    bucket.resize(n_runs);
    parallel_for(workers, workers, [&](std::size_t w, unsigned) {
        std::vector<std::uint32_t>& fill = runs_of[w];
        const std::vector<std::uint64_t>& v = runs[w];
        for (std::size_t k = 0; k < v.size(); k += 2)
            bucket[fill[static_cast<std::uint32_t>(v[k])]++] = std::uint64_t(rank_b[v[k] >> 32]) << 32 | v[k + 1];
    });

    // Each truth label's columns, counted with a marker per proposal label. Thread p takes consecutive
    // truth labels with about equal numbers of runs and writes their entries from the offset of their
    // first run (a label has at most as many entries as runs); the parts are then moved together.
    std::vector<std::size_t> first_row(workers + 1, order_a.size()), written(workers, 0);
    first_row[0] = 0;
    for (unsigned p = 1; p < workers; ++p)
        first_row[p] = static_cast<std::size_t>(std::lower_bound(start.begin(), start.end() - 1, n_runs * p / workers) - start.begin());
    out.rows.resize(n_runs), out.cols.resize(n_runs), out.counts.resize(n_runs);  // not zeroed: written below
    if (ws.seen_in.size() < workers) ws.seen_in.resize(workers), ws.slot_of.resize(workers);
    parallel_for(workers, workers, [&](std::size_t p, unsigned) {
        std::vector<std::uint32_t>& seen_in = ws.seen_in[p];
        std::vector<std::uint32_t>& slot_of = ws.slot_of[p];
        seen_in.assign(order_b.size(), ~0u), slot_of.resize(order_b.size());
        std::vector<std::pair<std::uint32_t, std::int64_t>> row_entries;
        std::size_t o = start[first_row[p]];
        for (std::size_t r = first_row[p]; r < first_row[p + 1]; ++r) {
            row_entries.clear();
            for (std::size_t k = start[r]; k < start[r + 1]; ++k) {
                const auto c = static_cast<std::uint32_t>(bucket[k] >> 32);
                if (seen_in[c] != r) {
                    seen_in[c] = static_cast<std::uint32_t>(r);
                    slot_of[c] = static_cast<std::uint32_t>(row_entries.size());
                    row_entries.emplace_back(c, 0);
                }
                row_entries[slot_of[c]].second += static_cast<std::int64_t>(bucket[k] & 0xFFFFFFFFull);
            }
            std::sort(row_entries.begin(), row_entries.end());
            for (const auto& [c, count] : row_entries)
                out.rows[o] = static_cast<std::int64_t>(r), out.cols[o] = c, out.counts[o] = count, ++o;
        }
        written[p] = o - start[first_row[p]];
    });
    std::size_t nnz = written[0];
    for (unsigned p = 1; p < workers; ++p) {
        const std::size_t from = start[first_row[p]];
        for (auto* v : {&out.rows, &out.cols, &out.counts})
            std::copy(v->begin() + static_cast<std::ptrdiff_t>(from), v->begin() + static_cast<std::ptrdiff_t>(from + written[p]),
                      v->begin() + static_cast<std::ptrdiff_t>(nnz));
        nnz += written[p];
    }
    out.rows.resize(nnz), out.cols.resize(nnz), out.counts.resize(nnz);
    return out;
}

}  // namespace unetsdk
