// Sparse contingency table of two label images over 64-bit label values, with no dense label x label
// matrix: labels are compared by value bits (callers map bits back to their dtype). Any shape and
// byte strides.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <utility>
#include <vector>

#include "thread_pool.hpp"

namespace unetsdk {

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

// Most elements copied at a time from a segment that cannot be read in place: the copy stays in cache,
// and a broadcast array (stride 0) is not expanded into a copy as large as the image.
constexpr std::int64_t kGatherChunk = 4096;

// Reads the elements [begin, end) of the layout (in its order) as contiguous segments of both arrays:
// fn(const A* a, const B* b, count). Segments of an array that is not contiguous along the last axis
// (or not aligned for its type) are copied into buf_a / buf_b first, kGatherChunk elements at a time;
// contiguous ones are read in place.
template <class A, class B, class Fn>
void for_each_segment(const char* a, const char* b, const Layout& lay, std::int64_t begin, std::int64_t end,
                      std::vector<A>& buf_a, std::vector<B>& buf_b, Fn&& fn) {
    const std::size_t d = lay.shape.size();
    const std::int64_t inner = lay.shape[d - 1], step_a = lay.sa[d - 1], step_b = lay.sb[d - 1];
    const auto direct = [](const char* base, std::int64_t step, std::size_t size, std::size_t align) {
        return step == static_cast<std::int64_t>(size) && reinterpret_cast<std::uintptr_t>(base) % align == 0;
    };
    const bool both_direct = direct(a, step_a, sizeof(A), alignof(A)) && direct(b, step_b, sizeof(B), alignof(B)) &&
                             [&] {  // every segment starts aligned too
                                 for (std::size_t k = 0; k + 1 < d; ++k)
                                     if (lay.sa[k] % static_cast<std::int64_t>(alignof(A)) || lay.sb[k] % static_cast<std::int64_t>(alignof(B)))
                                         return false;
                                 return true;
                             }();
    for (std::int64_t pos = begin; pos < end;) {
        std::int64_t row = pos / inner, x = pos % inner, oa = 0, ob = 0;
        const std::int64_t count = std::min({inner - x, end - pos, both_direct ? inner : kGatherChunk});
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

// Label (as its order key) -> id, ids in value order. Direct when the value range is small (the usual
// case: labels 0..n): id = key - lo. Else dense: the labels were renumbered 0..d-1 (dense_ids) and keys
// holds their sorted distinct keys.
template <class T>
class LabelIds {
public:
    // Whether labels with keys in [lo, hi] of an array of n elements get direct ids.
    static bool fits_direct(std::uint64_t lo, std::uint64_t hi, std::uint64_t n) {
        return hi - lo <= n + 65536 && hi - lo <= 0xFFFFFFFFull;
    }
    LabelIds(std::uint64_t lo, std::uint64_t hi, bool is_signed)
        : lo_(lo), signed_(is_signed), dense_(false), capacity_(static_cast<std::size_t>(hi - lo) + 1) {}
    LabelIds(std::vector<std::uint64_t> keys, bool is_signed)
        : lo_(0), signed_(is_signed), dense_(true), capacity_(keys.size()), keys_(std::move(keys)) {}
    bool dense() const { return dense_; }
    // ids are < capacity()
    std::size_t capacity() const { return capacity_; }
    // The id of a label's key, or ~0u if no element has it (direct: if it is outside the range).
    std::uint32_t find(std::uint64_t key) const {
        if (!dense_) return key >= lo_ && key - lo_ < capacity_ ? static_cast<std::uint32_t>(key - lo_) : ~0u;
        const auto it = std::lower_bound(keys_.begin(), keys_.end(), key);
        return it != keys_.end() && *it == key ? static_cast<std::uint32_t>(it - keys_.begin()) : ~0u;
    }
    // Frees the dense keys once no find() or ranks() follows.
    void forget_keys() { std::vector<std::uint64_t>().swap(keys_); }
    // Of the ids with size[id] > 0: rank[id] = position in value order (~0u for absent ids), order =
    // the ids in value order, sorted = their label bits.
    void ranks(const std::vector<std::int64_t>& size, std::vector<std::uint32_t>& rank, std::vector<std::uint32_t>& order,
               std::vector<std::uint64_t>& sorted) const {
        rank.assign(capacity(), ~0u);
        order.clear();
        for (std::size_t id = 0; id < size.size(); ++id)
            if (size[id] > 0) order.push_back(static_cast<std::uint32_t>(id));
        sorted.resize(order.size());
        for (std::size_t r = 0; r < order.size(); ++r) {
            const std::uint32_t id = order[r];
            rank[id] = static_cast<std::uint32_t>(r);
            sorted[r] = order_key(static_cast<T>(dense_ ? keys_[id] : lo_ + id), signed_);
        }
    }

private:
    std::uint64_t lo_;
    bool signed_, dense_;
    std::size_t capacity_;
    std::vector<std::uint64_t> keys_;  // dense: the key of each id
};

// Inputs below this many elements are counted by one thread: starting threads costs more.
constexpr std::int64_t kParallelElements = std::int64_t(1) << 19;
// Most elements in one block of the run pass: run lengths (and offsets in a block) fit 32 bits.
constexpr std::int64_t kMaxBlock = 0xFFFFFFFF;
// Elements whose label range decides, before the run pass, that a side needs dense ids.
constexpr std::int64_t kRangeSample = std::int64_t(1) << 16;

struct KeyRange {
    std::uint64_t lo_a = ~0ULL, hi_a = 0, lo_b = ~0ULL, hi_b = 0;
    void merge(const KeyRange& r) {
        lo_a = std::min(lo_a, r.lo_a), hi_a = std::max(hi_a, r.hi_a);
        lo_b = std::min(lo_b, r.lo_b), hi_b = std::max(hi_b, r.hi_b);
    }
};

// The runs of equal (truth, proposal) labels in the elements [begin, end) of the layout; returns their
// number. Records (2 words): (low 32 bits of the truth key | low 32 bits of the proposal key << 32,
// offset of the run's first element from begin); enough when each key range spans less than 2^32 (the
// keys are then lo + (low bits - low bits of lo) mod 2^32). Branch-free: each element is written as the
// next record, which is kept (the write position advances) only where a label changes, so label
// boundaries cost no mispredicted branches.
template <class A, class B>
std::size_t collect_runs(const char* a, const char* b, const Layout& lay, std::int64_t begin, std::int64_t end,
                         bool a_signed, bool b_signed, Buffer<std::uint64_t>& out, KeyRange& range) {
    out.resize(2 * static_cast<std::size_t>(end - begin));
    const A flip_a = a_signed ? static_cast<A>(A(1) << (sizeof(A) * 8 - 1)) : A(0);  // key = order_key(bits)
    const B flip_b = b_signed ? static_cast<B>(B(1) << (sizeof(B) * 8 - 1)) : B(0);
    std::uint64_t* w = out.data();
    A run_a{}, lo_a = static_cast<A>(~A(0)), hi_a{};
    B run_b{}, lo_b = static_cast<B>(~B(0)), hi_b{};
    std::uint64_t offset = 0;
    std::vector<A> buf_a;
    std::vector<B> buf_b;
    for_each_segment<A, B>(a, b, lay, begin, end, buf_a, buf_b, [&](const A* pa, const B* pb, std::int64_t count) {
        // locals (no references): the loop keeps them in registers, unaffected by its stores
        A ra = run_a, la = lo_a, ha = hi_a;
        B rb = run_b, lb = lo_b, hb = hi_b;
        const A fa = flip_a;
        const B fb = flip_b;
        const std::uint64_t base = offset;
        std::uint64_t* wp = w;
        std::int64_t x = 0;
        if (base == 0) {  // the block's first element starts a run
            ra = la = ha = static_cast<A>(pa[0] ^ fa), rb = lb = hb = static_cast<B>(pb[0] ^ fb);
            wp[0] = std::uint64_t(static_cast<std::uint32_t>(ra)) | std::uint64_t(static_cast<std::uint32_t>(rb)) << 32, wp[1] = 0;
            wp += 2, x = 1;
        }
        for (; x < count; ++x) {
            const A ka = static_cast<A>(pa[x] ^ fa);
            const B kb = static_cast<B>(pb[x] ^ fb);
            wp[0] = std::uint64_t(static_cast<std::uint32_t>(ka)) | std::uint64_t(static_cast<std::uint32_t>(kb)) << 32,
            wp[1] = base + static_cast<std::uint64_t>(x);
            wp += 2 * static_cast<std::size_t>((ka != ra) | (kb != rb));
            ra = ka, rb = kb;
            la = std::min(la, ka), ha = std::max(ha, ka), lb = std::min(lb, kb), hb = std::max(hb, kb);
        }
        run_a = ra, run_b = rb, lo_a = la, hi_a = ha, lo_b = lb, hi_b = hb, w = wp;
        offset += static_cast<std::uint64_t>(count);
    });
    range.lo_a = lo_a, range.hi_a = hi_a, range.lo_b = lo_b, range.hi_b = hi_b;
    return static_cast<std::size_t>(w - out.data()) / 2;
}

// Labels of an array renumbered 0..d-1 in value order, for label ranges too wide for direct ids: the
// elements' (key, position) pairs are sorted (a part per worker, then merged): ids[position] (layout
// order) = the rank of the key among the d distinct keys, which go to keys. Memory: 16 bytes per element
// (+ 8 while merging), then 4 (ids) + 8 per distinct label. Needs fewer than 2^32 elements.
template <class T>
void dense_ids(const char* data, const Layout& lay, const std::vector<std::int64_t>& strides, bool is_signed, unsigned workers,
               Buffer<std::uint32_t>& ids, std::vector<std::uint64_t>& keys) {
    const std::int64_t n = lay.size();
    if (n > std::int64_t(0xFFFFFFFF)) throw std::length_error("contingency: more than 2^32 - 1 elements with labels spread this wide");
    const Layout one{lay.shape, strides, strides};
    struct Item {
        std::uint64_t key;
        std::uint32_t position;
        bool operator<(const Item& o) const { return key < o.key; }
    };
    Buffer<Item> items(static_cast<std::size_t>(n));
    const auto bound = [&](std::size_t k) { return static_cast<std::size_t>(n * static_cast<std::int64_t>(k) / workers); };
    parallel_for(workers, workers, [&](std::size_t k, unsigned) {
        std::vector<T> buf, unused;
        Item* out = items.data() + bound(k);
        auto position = static_cast<std::uint32_t>(bound(k));
        for_each_segment<T, T>(data, data, one, static_cast<std::int64_t>(bound(k)), static_cast<std::int64_t>(bound(k + 1)), buf,
                               unused, [&](const T* values, const T*, std::int64_t count) {
                                   for (std::int64_t x = 0; x < count; ++x) *out++ = Item{order_key(values[x], is_signed), position++};
                               });
        std::sort(items.data() + bound(k), items.data() + bound(k + 1));
    });
    for (std::size_t width = 1; width < workers; width *= 2)  // merge the sorted parts pairwise
        parallel_for(workers, workers, [&](std::size_t k, unsigned) {
            if (k % (2 * width) == 0 && k + width < workers)
                std::inplace_merge(items.data() + bound(k), items.data() + bound(k + width),
                                   items.data() + bound(std::min<std::size_t>(k + 2 * width, workers)));
        });
    std::size_t distinct = 0;
    for (std::size_t i = 0; i < items.size(); ++i) distinct += i == 0 || items[i].key != items[i - 1].key;
    keys.resize(distinct);
    ids.resize(static_cast<std::size_t>(n));
    std::uint32_t id = 0;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i > 0 && items[i].key != items[i - 1].key) ++id;
        keys[id] = items[i].key;
        ids[items[i].position] = id;
    }
}

}  // namespace detail

// Scratch memory of contingency_table / contingency_summary, kept between calls by callers that count
// many tables: fresh pages cost more than the counting itself on large inputs.
struct ContingencyWorkspace {
    std::vector<Buffer<std::uint64_t>> runs;                       // per block
    std::vector<std::vector<std::uint32_t>> runs_of;               // per block, per group
    std::vector<std::vector<std::int64_t>> size_a, size_b;         // per block / worker, per id
    std::vector<std::vector<std::int64_t>> column_total;           // per worker, per column
    std::vector<Buffer<std::pair<std::uint32_t, std::int64_t>>> entries;  // per worker: one group's
    std::vector<std::uint32_t> group_of;                           // per truth id
    std::vector<std::size_t> start;                                // per group: first run in the bucket
    Buffer<std::uint64_t> bucket;

    // Bytes allocated (capacities).
    std::size_t bytes() const {
        std::size_t total = group_of.capacity() * sizeof(std::uint32_t) + start.capacity() * sizeof(std::size_t) +
                            bucket.capacity() * sizeof(std::uint64_t);
        const auto add = [&](const auto& vectors) {
            for (const auto& v : vectors) total += v.capacity() * sizeof(v[0]);
        };
        add(runs), add(runs_of), add(size_a), add(size_b), add(column_total), add(entries);
        return total;
    }
};

// What a ContingencyWorkspace may keep allocated between calls (larger ones are freed after the call):
// enough for 2048^2 label images of typical segmentations (87 MB), whose calls take 3.5x as long with
// fresh pages.
constexpr std::size_t kMaxCachedContingencyBytes = std::size_t(96) << 20;

namespace detail {

// The runs of a (truth) and b (proposal), one block of elements per thread (more blocks when a block
// would exceed kMaxBlock elements), in ws.runs as records whose 32-bit fields, minus base_a / base_b,
// are the label ids (direct ids: the low bits of the range's lowest key; dense ids: 0).
template <class A, class B>
struct LabelRuns {
    LabelIds<A> ids_a;
    LabelIds<B> ids_b;
    unsigned workers;
    std::vector<std::size_t> count;          // runs per block
    std::vector<std::uint64_t> length;       // elements per block
    std::uint32_t base_a = 0, base_b = 0;

    std::size_t blocks() const { return count.size(); }
    // fn(id_a, id_b, run length) for each run of block k, in scan order
    template <class Fn>
    void for_each_run(const ContingencyWorkspace& ws, std::size_t k, Fn&& fn) const {
        const std::uint64_t* v = ws.runs[k].data();
        const std::size_t n = count[k];
        const std::uint32_t ba = base_a, bb = base_b;
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint64_t next = i + 1 < n ? v[2 * i + 3] : length[k];
            fn(static_cast<std::uint32_t>(v[2 * i]) - ba, static_cast<std::uint32_t>(v[2 * i] >> 32) - bb, next - v[2 * i + 1]);
        }
    }
};

// Byte strides of a contiguous array of the layout's shape (in the layout's order).
inline std::vector<std::int64_t> contiguous_strides(const std::vector<std::int64_t>& shape, std::int64_t itemsize) {
    std::vector<std::int64_t> strides(shape.size());
    std::int64_t step = itemsize;
    for (std::size_t k = shape.size(); k-- > 0;) strides[k] = step, step *= shape[k];
    return strides;
}

// The runs and ids of both arrays. Runs are collected with the labels as they are; a side whose labels
// span too wide a range for direct ids (seen in the first kRangeSample elements, or after the run pass)
// is renumbered (dense_ids: by sorting, in memory proportional to the elements, where a hash map of the
// labels needs several times more) and the runs collected from its ids.
template <class A, class B>
LabelRuns<A, B> label_runs(const char* a, const char* b, const std::vector<std::int64_t>& shape,
                           const std::vector<std::int64_t>& strides_a, const std::vector<std::int64_t>& strides_b,
                           bool a_signed, bool b_signed, unsigned threads, ContingencyWorkspace& ws) {
    const Layout lay = plan_layout(shape, strides_a, strides_b);
    const std::int64_t n = lay.size();
    const unsigned workers = n < kParallelElements ? 1u : resolve_threads(threads);
    const auto blocks = static_cast<std::size_t>(std::max<std::int64_t>(workers, (n + kMaxBlock - 1) / kMaxBlock));
    const auto bound = [&](std::size_t k) { return n * static_cast<std::int64_t>(k) / static_cast<std::int64_t>(blocks); };
    if (ws.runs.size() < blocks) ws.runs.resize(blocks);
    std::vector<std::size_t> count(blocks);
    std::vector<KeyRange> ranges(blocks);
    const auto collect = [&](auto ta, auto tb, const char* pa, const char* pb, const Layout& l, bool sa, bool sb) {
        parallel_for(blocks, workers, [&](std::size_t k, unsigned) {
            count[k] = collect_runs<decltype(ta), decltype(tb)>(pa, pb, l, bound(k), bound(k + 1), sa, sb, ws.runs[k], ranges[k]);
        });
        KeyRange all;
        for (const KeyRange& r : ranges) all.merge(r);
        return all;
    };
    // labels spread too wide in the first elements are spread too wide in all: no collection to throw away
    const auto un = static_cast<std::uint64_t>(n);
    KeyRange first;
    {
        Buffer<std::uint64_t> sample;
        collect_runs<A, B>(a, b, lay, 0, std::min<std::int64_t>(n, kRangeSample), a_signed, b_signed, sample, first);
    }
    bool direct_a = LabelIds<A>::fits_direct(first.lo_a, first.hi_a, un), direct_b = LabelIds<B>::fits_direct(first.lo_b, first.hi_b, un);
    LabelRuns<A, B> out{LabelIds<A>(0, 0, a_signed), LabelIds<B>(0, 0, b_signed), workers, count, std::vector<std::uint64_t>(blocks)};
    for (std::size_t k = 0; k < blocks; ++k) out.length[k] = static_cast<std::uint64_t>(bound(k + 1) - bound(k));
    if (direct_a && direct_b) {
        const KeyRange all = collect(A{}, B{}, a, b, lay, a_signed, b_signed);
        direct_a = LabelIds<A>::fits_direct(all.lo_a, all.hi_a, un), direct_b = LabelIds<B>::fits_direct(all.lo_b, all.hi_b, un);
        if (direct_a && direct_b) {
            out.ids_a = LabelIds<A>(all.lo_a, all.hi_a, a_signed), out.ids_b = LabelIds<B>(all.lo_b, all.hi_b, b_signed);
            out.base_a = static_cast<std::uint32_t>(all.lo_a), out.base_b = static_cast<std::uint32_t>(all.lo_b);
            out.count = count;
            return out;
        }
        for (auto& runs : ws.runs) Buffer<std::uint64_t>().swap(runs);  // free before sorting
    }
    Buffer<std::uint32_t> dense_a, dense_b;
    Layout dense = lay;
    const char* pa = a;
    const char* pb = b;
    if (!direct_a) {
        std::vector<std::uint64_t> keys;
        dense_ids<A>(a, lay, lay.sa, a_signed, workers, dense_a, keys);
        out.ids_a = LabelIds<A>(std::move(keys), a_signed);
        dense.sa = contiguous_strides(lay.shape, sizeof(std::uint32_t)), pa = reinterpret_cast<const char*>(dense_a.data());
    }
    if (!direct_b) {
        std::vector<std::uint64_t> keys;
        dense_ids<B>(b, lay, lay.sb, b_signed, workers, dense_b, keys);
        out.ids_b = LabelIds<B>(std::move(keys), b_signed);
        dense.sb = contiguous_strides(lay.shape, sizeof(std::uint32_t)), pb = reinterpret_cast<const char*>(dense_b.data());
    }
    KeyRange all;  // of the ids of a dense side (base 0), of the labels of a direct one
    if (direct_a) all = collect(A{}, std::uint32_t{}, pa, pb, dense, a_signed, false);
    else if (direct_b) all = collect(std::uint32_t{}, B{}, pa, pb, dense, false, b_signed);
    else all = collect(std::uint32_t{}, std::uint32_t{}, pa, pb, dense, false, false);
    if (direct_a) out.ids_a = LabelIds<A>(all.lo_a, all.hi_a, a_signed), out.base_a = static_cast<std::uint32_t>(all.lo_a);
    if (direct_b) out.ids_b = LabelIds<B>(all.lo_b, all.hi_b, b_signed), out.base_b = static_cast<std::uint32_t>(all.lo_b);
    out.count = count;
    return out;
}

// Buckets the runs by the group of their truth id (group_of[id]; ~0u: left out) as (column << 32 |
// length), column = col_of[proposal id] (col_of empty: the proposal id itself): group g's runs are
// ws.bucket[start[g], start[g + 1]). Block k writes its runs of group g from start[g] + the runs of g of
// the blocks before it, so the order within a group is the scan order.
template <class A, class B>
void group_runs(const LabelRuns<A, B>& lr, const std::vector<std::uint32_t>& group_of, std::size_t n_groups,
                const std::vector<std::uint32_t>& col_of, ContingencyWorkspace& ws, std::vector<std::size_t>& start) {
    const std::size_t blocks = lr.blocks();
    auto& runs_of = ws.runs_of;
    if (runs_of.size() < blocks) runs_of.resize(blocks);
    const std::uint32_t* group = group_of.data();
    parallel_for(blocks, lr.workers, [&](std::size_t k, unsigned) {
        runs_of[k].assign(n_groups, 0);
        std::uint32_t* c = runs_of[k].data();
        lr.for_each_run(ws, k, [&](std::uint32_t id_a, std::uint32_t, std::uint64_t) {
            const std::uint32_t g = group[id_a];
            if (g != ~0u) ++c[g];
        });
    });
    // offsets: each worker adds up a range of groups, then writes the offsets of that range
    start.resize(n_groups + 1);
    const unsigned workers = lr.workers;
    const auto range = [&](std::size_t p) { return n_groups * p / workers; };
    std::vector<std::size_t> range_start(workers + 1, 0);
    parallel_for(workers, workers, [&](std::size_t p, unsigned) {
        std::size_t total = 0;
        for (std::size_t g = range(p); g < range(p + 1); ++g)
            for (std::size_t k = 0; k < blocks; ++k) total += runs_of[k][g];
        range_start[p + 1] = total;
    });
    for (unsigned p = 0; p < workers; ++p) range_start[p + 1] += range_start[p];
    parallel_for(workers, workers, [&](std::size_t p, unsigned) {
        std::size_t total = range_start[p];
        for (std::size_t g = range(p); g < range(p + 1); ++g) {
            start[g] = total;
            for (std::size_t k = 0; k < blocks; ++k) {
                const std::uint32_t c = runs_of[k][g];
                runs_of[k][g] = static_cast<std::uint32_t>(total);  // now: this block's first slot
                total += c;
            }
        }
    });
    start[n_groups] = range_start[workers];
    if (start[n_groups] > 0xFFFFFFFFull) throw std::length_error("contingency: more than 2^32 label runs");
    ws.bucket.resize(start[n_groups]);
    std::uint64_t* bucket = ws.bucket.data();
    const std::uint32_t* col = col_of.empty() ? nullptr : col_of.data();
    parallel_for(blocks, lr.workers, [&](std::size_t k, unsigned) {
        std::uint32_t* fill = runs_of[k].data();
        lr.for_each_run(ws, k, [&](std::uint32_t id_a, std::uint32_t id_b, std::uint64_t length) {
            const std::uint32_t g = group[id_a];
            if (g != ~0u) bucket[fill[g]++] = std::uint64_t(col ? col[id_b] : id_b) << 32 | length;
        });
    });
}

// Splits the groups among workers into consecutive ranges of about equal numbers of runs: worker p
// takes groups [first[p], first[p + 1]).
inline std::vector<std::size_t> partition_groups(const std::vector<std::size_t>& start, unsigned workers) {
    const std::size_t n_groups = start.size() - 1, n_runs = start.back();
    std::vector<std::size_t> first(workers + 1, n_groups);
    first[0] = 0;
    for (unsigned p = 1; p < workers; ++p)
        first[p] = static_cast<std::size_t>(std::lower_bound(start.begin(), start.end() - 1, n_runs * p / workers) - start.begin());
    return first;
}

// Calls on_group(p, g, entries, m) for each nonempty group g of worker p's range, entries[0, m) = its
// (column, pixels) pairs in first-seen order: each run adds its length to its column's total in a
// per-worker array, and a column whose total was 0 joins the group's list (branch-free: whether a run's
// column is new to its group is as unpredictable as the labels); the totals are read and cleared from
// the list.
template <class Fn>
void count_groups(const std::vector<std::size_t>& start, const std::vector<std::size_t>& first, std::size_t n_cols,
                  ContingencyWorkspace& ws, Fn&& on_group) {
    const unsigned workers = static_cast<unsigned>(first.size() - 1);
    if (ws.column_total.size() < workers) ws.column_total.resize(workers), ws.entries.resize(workers);
    parallel_for(workers, workers, [&](std::size_t p, unsigned) {
        ws.column_total[p].assign(n_cols, 0);
        std::size_t most_runs = 0;
        for (std::size_t g = first[p]; g < first[p + 1]; ++g) most_runs = std::max(most_runs, start[g + 1] - start[g]);
        ws.entries[p].resize(most_runs);  // a group has at most one entry per run
        std::int64_t* total = ws.column_total[p].data();
        std::pair<std::uint32_t, std::int64_t>* e = ws.entries[p].data();
        const std::uint64_t* bucket = ws.bucket.data();
        for (std::size_t g = first[p]; g < first[p + 1]; ++g) {
            const std::size_t begin = start[g], end = start[g + 1];
            if (begin == end) continue;
            std::uint32_t m = 0;  // entries so far
            for (std::size_t k = begin; k < end; ++k) {
                const auto c = static_cast<std::uint32_t>(bucket[k] >> 32);
                const std::int64_t before = total[c];
                total[c] = before + static_cast<std::int64_t>(bucket[k] & 0xFFFFFFFFull);
                e[m].first = c;
                m += before == 0;
            }
            for (std::uint32_t k = 0; k < m; ++k) {
                std::int64_t& t = total[e[k].first];
                e[k].second = t, t = 0;
            }
            on_group(p, g, e, m);
        }
    });
}

}  // namespace detail

// Contingency table of label arrays a (truth) and b (proposal) with equal shape, read as unsigned
// integers A and B of the labels' widths (a_signed / b_signed: order the labels as signed values).
//
// One pass over the data, each thread on its own block of elements, collects the runs of equal
// (truth, proposal) labels (labels come in runs along rows) and the label ranges; the runs' labels
// become ids (directly, or renumbered by sorting when a range is too wide). The runs are bucketed by truth label
// and each bucket's columns counted with a marker per proposal label: linear time, no hashing of pairs,
// and a canonical result (labels in value order, entries by (row, col)) whatever the memory layout or
// the number of threads.
template <class A, class B>
Contingency contingency_table(const char* a, const char* b, const std::vector<std::int64_t>& shape,
                              const std::vector<std::int64_t>& strides_a, const std::vector<std::int64_t>& strides_b,
                              bool a_signed, bool b_signed, unsigned threads, ContingencyWorkspace* workspace = nullptr) {
    ContingencyWorkspace local;
    ContingencyWorkspace& ws = workspace ? *workspace : local;
    detail::LabelRuns<A, B> lr = detail::label_runs<A, B>(a, b, shape, strides_a, strides_b, a_signed, b_signed, threads, ws);
    const std::size_t blocks = lr.blocks(), na = lr.ids_a.capacity(), nb = lr.ids_b.capacity();

    // label sizes, per block, summed into block 0's
    auto& size_a = ws.size_a;
    auto& size_b = ws.size_b;
    if (size_a.size() < blocks) size_a.resize(blocks), size_b.resize(blocks);
    parallel_for(blocks, lr.workers, [&](std::size_t k, unsigned) {
        size_a[k].assign(na, 0), size_b[k].assign(nb, 0);
        std::int64_t* sa = size_a[k].data();
        std::int64_t* sb = size_b[k].data();
        lr.for_each_run(ws, k, [&](std::uint32_t id_a, std::uint32_t id_b, std::uint64_t length) {
            sa[id_a] += static_cast<std::int64_t>(length), sb[id_b] += static_cast<std::int64_t>(length);
        });
    });
    for (std::size_t k = 1; k < blocks; ++k) {
        for (std::size_t i = 0; i < na; ++i) size_a[0][i] += size_a[k][i];
        for (std::size_t j = 0; j < nb; ++j) size_b[0][j] += size_b[k][j];
    }
    Contingency out;
    std::vector<std::uint32_t> rank_a, rank_b, order_a, order_b;
    lr.ids_a.ranks(size_a[0], rank_a, order_a, out.truth_values);
    lr.ids_b.ranks(size_b[0], rank_b, order_b, out.proposal_values);
    out.truth_sizes.resize(order_a.size());
    out.proposal_sizes.resize(order_b.size());
    for (std::size_t r = 0; r < order_a.size(); ++r) out.truth_sizes[r] = size_a[0][order_a[r]];
    for (std::size_t r = 0; r < order_b.size(); ++r) out.proposal_sizes[r] = size_b[0][order_b[r]];

    // Rows in value order; worker p writes its rows' entries from the offset of their first run (a row
    // has at most as many entries as runs); the parts are then moved together.
    std::vector<std::size_t> start;
    detail::group_runs(lr, rank_a, order_a.size(), rank_b, ws, start);
    const std::vector<std::size_t> first = detail::partition_groups(start, lr.workers);
    const std::size_t n_runs = start.back();
    out.rows.resize(n_runs), out.cols.resize(n_runs), out.counts.resize(n_runs);  // not zeroed: written below
    std::vector<std::size_t> cursor(lr.workers);
    for (unsigned p = 0; p < lr.workers; ++p) cursor[p] = start[first[p]];
    detail::count_groups(start, first, order_b.size(), ws, [&](std::size_t p, std::size_t r, auto* entries, std::uint32_t m) {
        std::sort(entries, entries + m);
        std::size_t& o = cursor[p];
        for (std::uint32_t k = 0; k < m; ++k)
            out.rows[o] = static_cast<std::int64_t>(r), out.cols[o] = entries[k].first, out.counts[o] = entries[k].second, ++o;
    });
    std::size_t nnz = cursor[0];
    for (unsigned p = 1; p < lr.workers; ++p) {
        const std::size_t from = start[first[p]], written = cursor[p] - from;
        for (auto* v : {&out.rows, &out.cols, &out.counts})
            std::copy(v->begin() + static_cast<std::ptrdiff_t>(from), v->begin() + static_cast<std::ptrdiff_t>(from + written),
                      v->begin() + static_cast<std::ptrdiff_t>(nnz));
        nnz += written;
    }
    out.rows.resize(nnz), out.cols.resize(nnz), out.counts.resize(nnz);
    return out;
}

// Exact sum of non-negative 64-bit integers and of their products: a 128-bit accumulator in two words
// (portable C++17, no __int128).
struct UInt128 {
    std::uint64_t lo = 0, hi = 0;
    void add(std::uint64_t x) {
        lo += x;
        hi += lo < x;
    }
    void add(const UInt128& x) {
        add(x.lo);
        hi += x.hi;
    }
    void add_product(std::uint64_t x, std::uint64_t y) {
        if ((x | y) >> 32 == 0) return add(x * y);
        // x = xh 2^32 + xl, y likewise: x y = xh yh 2^64 + (xh yl + xl yh) 2^32 + xl yl
        const std::uint64_t xh = x >> 32, xl = x & 0xFFFFFFFFull, yh = y >> 32, yl = y & 0xFFFFFFFFull;
        const std::uint64_t m1 = xh * yl, m2 = xl * yh;
        hi += xh * yh + (m1 >> 32) + (m2 >> 32);
        add(m1 << 32);
        add(m2 << 32);
        add(xl * yl);
    }
};

// Neumaier's compensated sum: the rounding error of each addition is carried along, so the result is
// accurate to about one rounding whatever the number of terms.
struct CompensatedSum {
    double sum = 0.0, carry = 0.0;
    void add(double x) {
        const double t = sum + x;
        carry += std::fabs(sum) >= std::fabs(x) ? (sum - t) + x : (x - t) + sum;
        sum = t;
    }
    void add(const CompensatedSum& x) {
        add(x.sum);
        carry += x.carry;
    }
    double value() const { return sum + carry; }
};

// Sums of x^2 (exact) and x log2 x (compensated) over a multiset of non-negative counts. Small counts
// (nearly all entries and labels) are only tallied, one increment each; the sums fold the tallies in
// at the end, each distinct small value's term computed once.
class CountSums {
public:
    static constexpr std::uint64_t kSmall = 4096;
    CountSums() : tally_(kSmall, 0) {}
    void add(std::uint64_t x) {
        if (x < kSmall) {
            ++tally_[x];
            return;
        }
        squares_.add_product(x, x);
        xlogx_.add(static_cast<double>(x) * std::log2(static_cast<double>(x)));
    }
    void add(const CountSums& other) {
        for (std::uint64_t x = 0; x < kSmall; ++x) tally_[x] += other.tally_[x];
        squares_.add(other.squares_);
        xlogx_.add(other.xlogx_);
    }
    UInt128 sum_squares() const {
        UInt128 s = squares_;
        for (std::uint64_t x = 1; x < kSmall; ++x) s.add_product(tally_[x], x * x);
        return s;
    }
    double sum_xlogx() const {
        CompensatedSum s = xlogx_;
        for (std::uint64_t x = 2; x < kSmall; ++x)
            if (tally_[x]) s.add(static_cast<double>(tally_[x]) * (static_cast<double>(x) * std::log2(static_cast<double>(x))));
        return s.value();
    }

private:
    std::vector<std::uint64_t> tally_;
    UInt128 squares_;
    CompensatedSum xlogx_;
};

// The sums the pair-counting metrics need from a contingency table c_ij (truth label i, proposal label
// j), over the truth labels not ignored: a_i = sum_j c_ij, b_j = sum_i c_ij (kept rows only).
struct ContingencySummary {
    std::int64_t total = 0;                                // N = sum c_ij
    UInt128 sum_sq_counts, sum_sq_truth, sum_sq_proposal;  // sum c_ij^2, sum a_i^2, sum b_j^2
    double xlogx_counts = 0.0, xlogx_truth = 0.0, xlogx_proposal = 0.0;  // sum x log2 x of the same
    std::int64_t zero_total = 0;                           // b_0 of proposal label 0 (0 if absent)
    UInt128 zero_sum_sq_counts;                            // sum_i c_i0^2
};

// Summary of the contingency table of a (truth) and b (proposal), without building the table: the runs
// are bucketed by truth id (not by value: no sort) and each bucket's entries folded into the sums as
// they are counted. ignore_bits: truth labels (bits of A) whose pixels are left out. Integer sums are
// exact; x log2 x sums are compensated.
template <class A, class B>
ContingencySummary contingency_summary(const char* a, const char* b, const std::vector<std::int64_t>& shape,
                                       const std::vector<std::int64_t>& strides_a,
                                       const std::vector<std::int64_t>& strides_b, bool a_signed, bool b_signed,
                                       const std::vector<std::uint64_t>& ignore_bits, unsigned threads,
                                       ContingencyWorkspace* workspace = nullptr) {
    ContingencyWorkspace local;
    ContingencyWorkspace& ws = workspace ? *workspace : local;
    detail::LabelRuns<A, B> lr = detail::label_runs<A, B>(a, b, shape, strides_a, strides_b, a_signed, b_signed, threads, ws);
    const std::size_t na = lr.ids_a.capacity(), nb = lr.ids_b.capacity();
    const unsigned workers = lr.workers;

    std::vector<std::uint32_t>& group_of = ws.group_of;  // the truth id itself, ~0u for ignored labels
    group_of.resize(na);
    std::iota(group_of.begin(), group_of.end(), 0u);
    for (const std::uint64_t bits : ignore_bits) {
        const std::uint32_t id = lr.ids_a.find(detail::order_key(static_cast<A>(bits), a_signed));
        if (id < na) group_of[id] = ~0u;
    }
    const std::uint32_t zero_col = lr.ids_b.find(detail::order_key(B(0), b_signed));
    lr.ids_a.forget_keys(), lr.ids_b.forget_keys();
    detail::group_runs(lr, group_of, na, {}, ws, ws.start);
    if (ws.bytes() > kMaxCachedContingencyBytes) {  // large input: the runs are in the bucket now
        for (auto& runs : ws.runs) Buffer<std::uint64_t>().swap(runs);
        for (auto& counts : ws.runs_of) std::vector<std::uint32_t>().swap(counts);
    }
    const std::vector<std::size_t> first = detail::partition_groups(ws.start, workers);

    struct alignas(64) Part {  // one worker's sums, on cache lines of its own
        CountSums counts, truth, proposal;
        std::int64_t total = 0, zero_total = 0;
        UInt128 zero_sq;
    };
    std::vector<Part> parts(workers);
    detail::count_groups(ws.start, first, nb, ws, [&](std::size_t p, std::size_t, const auto* entries, std::uint32_t m) {
        Part& s = parts[p];
        std::int64_t row = 0;
        for (std::uint32_t k = 0; k < m; ++k) {
            const auto [c, count] = entries[k];
            s.counts.add(static_cast<std::uint64_t>(count));
            row += count;
            if (c == zero_col) s.zero_total += count, s.zero_sq.add_product(static_cast<std::uint64_t>(count), static_cast<std::uint64_t>(count));
        }
        s.total += row;
        s.truth.add(static_cast<std::uint64_t>(row));
    });
    // b_j over the rows kept, from the bucket (which holds their runs only): each worker adds up the runs
    // of its own range of columns, into one array (one per worker could be as large as the input)
    std::vector<std::int64_t> col_total(nb);
    const std::uint64_t* bucket = ws.bucket.data();
    const std::size_t n_runs = ws.start.back();
    parallel_for(workers, workers, [&](std::size_t p, unsigned) {
        const std::size_t lo = nb * p / workers, hi = nb * (p + 1) / workers;
        for (std::size_t k = 0; k < n_runs; ++k) {
            const std::size_t c = static_cast<std::size_t>(bucket[k] >> 32);
            if (c - lo < hi - lo) col_total[c] += static_cast<std::int64_t>(bucket[k] & 0xFFFFFFFFull);
        }
        for (std::size_t j = lo; j < hi; ++j) parts[p].proposal.add(static_cast<std::uint64_t>(col_total[j]));
    });
    Part& all = parts[0];
    for (unsigned p = 1; p < workers; ++p) {
        const Part& s = parts[p];
        all.total += s.total, all.zero_total += s.zero_total, all.zero_sq.add(s.zero_sq);
        all.counts.add(s.counts), all.truth.add(s.truth), all.proposal.add(s.proposal);
    }
    ContingencySummary out;
    out.total = all.total, out.zero_total = all.zero_total, out.zero_sum_sq_counts = all.zero_sq;
    out.sum_sq_counts = all.counts.sum_squares(), out.sum_sq_truth = all.truth.sum_squares();
    out.sum_sq_proposal = all.proposal.sum_squares();
    out.xlogx_counts = all.counts.sum_xlogx(), out.xlogx_truth = all.truth.sum_xlogx();
    out.xlogx_proposal = all.proposal.sum_xlogx();
    return out;
}

}  // namespace unetsdk
