// The ISBI 2012 challenge scores (Fiji's ISBI evaluation script) as raw, poolable accumulators.
//
// For each threshold of a sweep and each slice of a (Z, H, W) stack:
//  - pixel statistics: tp/fp/fn of foreground (truth > 0 vs proposal > th);
//  - foreground-restricted Rand statistics (Arganda-Carreras et al., Front. Neuroanat. 2015): with
//    c_ij the pixels in truth component i >= 1 and proposal component j (j = 0: proposal background,
//    counted as singletons), a_i = sum_j c_ij, b_j = sum_{i>=1} c_ij (j >= 1), C0 = sum_i c_i0:
//      tp = sum_{i,j>=1} c_ij^2 + C0,  fp = sum_j b_j^2 - sum_{i,j>=1} c_ij^2,  fn = sum_i a_i^2 - tp
//    (Fiji's n^2-scaled probabilities, in exact integers); slices without truth foreground are left
//    out (Fiji turns them into NaN and reports Rand error 1);
//  - for the first n_warp thresholds: split and merger pixels after warping (radius as given).
// Components are 4-connected in 2D. Each (slice, threshold) is an independent task, run a slice per
// worker (parallel_for_groups); the warp's mismatch order at every threshold comes from one sort per
// slice (sweep_order.hpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "components.hpp"
#include "sweep_order.hpp"
#include "scratch_cache.hpp"
#include "thread_pool.hpp"
#include "value_summary.hpp"
#include "views.hpp"
#include "warping_error.hpp"

namespace unetsdk {

struct SweepRow {
    std::int64_t splits = 0, mergers = 0;             // warping thresholds only
    std::int64_t pixel_tp = 0, pixel_fp = 0, pixel_fn = 0;
    std::int64_t rand_tp = 0, rand_fp = 0, rand_fn = 0;  // summed over slices with truth foreground

    SweepRow& operator+=(const SweepRow& o) {
        splits += o.splits, mergers += o.mergers;
        pixel_tp += o.pixel_tp, pixel_fp += o.pixel_fp, pixel_fn += o.pixel_fn;
        rand_tp += o.rand_tp, rand_fp += o.rand_fp, rand_fn += o.rand_fn;
        return *this;
    }
};

struct RandScratch {
    std::vector<std::int64_t> sizes, b;
    struct Segment { std::uint32_t truth, proposal; std::int64_t length; };
    std::vector<Segment> segments, by_truth;
    std::vector<std::size_t> start;
    std::vector<std::uint32_t> stamp;
    std::vector<std::int64_t> count;
};

// What the Rand statistics need of a truth slice at every threshold: its foreground pixels
// n = sum_i a_i and sum_i a_i^2 over its components.
struct TruthSums {
    std::int64_t pixels = 0, sum_sq_sizes = 0;
};

inline TruthSums truth_sums(const RunLabels& truth, RandScratch& s) {
    s.sizes.assign(truth.count + 1, 0);
    for (const Run& r : truth.runs) s.sizes[r.label] += r.x1 - r.x0;
    TruthSums out;
    for (std::size_t i = 1; i < s.sizes.size(); ++i) out.pixels += s.sizes[i], out.sum_sq_sizes += s.sizes[i] * s.sizes[i];
    return out;
}

// Pixel and foreground-restricted Rand statistics of one slice from the run labellings of its truth
// (with its truth_sums) and of its thresholded proposal (both one slice). Writes into row (pixel_*
// always, rand_* only if the truth has foreground). The pair counts c_ij come from the overlaps of
// truth and proposal runs, grouped by truth component, so that each group's proposal components are
// summed with a stamp array.
inline void pixel_and_rand_counts(const RunLabels& truth, const TruthSums& sums, const RunLabels& proposal, RandScratch& s,
                                  SweepRow& row) {
    s.b.assign(proposal.count + 1, 0);
    s.segments.clear();
    const std::int64_t n = sums.pixels;
    std::int64_t overlap_total = 0, proposal_total = 0;
    for (index_t l = 0; l < truth.ny * truth.nz; ++l) {
        const Run* p = proposal.begin_line(l);
        const Run* p_end = proposal.end_line(l);
        for (const Run* q = p; q != p_end; ++q) proposal_total += q->x1 - q->x0;
        for (const Run* t = truth.begin_line(l); t != truth.end_line(l); ++t) {
            while (p != p_end && p->x1 <= t->x0) ++p;
            for (const Run* q = p; q != p_end && q->x0 < t->x1; ++q) {
                const std::int64_t ov = std::min(t->x1, q->x1) - std::max(t->x0, q->x0);
                overlap_total += ov;
                s.b[q->label] += ov;
                if (!s.segments.empty() && s.segments.back().truth == t->label && s.segments.back().proposal == q->label)
                    s.segments.back().length += ov;
                else
                    s.segments.push_back({t->label, q->label, ov});
            }
        }
    }
    row.pixel_tp += overlap_total;
    row.pixel_fn += n - overlap_total;
    row.pixel_fp += proposal_total - overlap_total;
    if (n == 0) return;
    const std::int64_t c0 = n - overlap_total;  // truth pixels in the proposal's background
    // group the overlap segments by truth component (counting sort)
    s.start.assign(truth.count + 2, 0);
    for (const auto& seg : s.segments) ++s.start[seg.truth + 1];
    for (std::size_t i = 1; i < s.start.size(); ++i) s.start[i] += s.start[i - 1];
    s.by_truth.resize(s.segments.size());
    for (const auto& seg : s.segments) s.by_truth[s.start[seg.truth]++] = seg;
    // sum over truth components of the squared pair counts, each group summed with a stamp array
    s.stamp.assign(proposal.count + 1, 0);
    s.count.resize(proposal.count + 1);
    std::int64_t sum_c2 = 0;
    std::size_t k = 0;
    for (std::uint32_t i = 1; i <= truth.count; ++i) {
        const std::size_t end = s.start[i];  // after the counting sort, start[i] is the end of group i
        const std::size_t begin = k;
        for (; k < end; ++k) {
            const auto& seg = s.by_truth[k];
            if (s.stamp[seg.proposal] != i) s.stamp[seg.proposal] = i, s.count[seg.proposal] = 0;
            s.count[seg.proposal] += seg.length;
        }
        for (std::size_t m = begin; m < end; ++m) {  // each pair once: the first segment clears its stamp
            const std::uint32_t j = s.by_truth[m].proposal;
            if (s.stamp[j] == i) sum_c2 += s.count[j] * s.count[j], s.stamp[j] = 0;
        }
    }
    std::int64_t sum_b2 = 0;
    for (std::size_t j = 1; j < s.b.size(); ++j) sum_b2 += s.b[j] * s.b[j];
    const std::int64_t tp = sum_c2 + c0;
    row.rand_tp += tp;
    row.rand_fp += sum_b2 - sum_c2;
    row.rand_fn += sums.sum_sq_sizes - tp;
}

struct SweepWorkspace {
    WarpingWorkspace warping;
    RunLabels proposal_runs;
    RandScratch rand;
    SweepOrderScratch order;
    SweepCandidateScratch candidate_scratch;
    std::vector<std::uint8_t> warped;
};

// level = number of thresholds t_k (ascending) with p > t_k, so that p > t_k  <=>  level > k: the
// proposal is read in floating point once per slice, every binarisation after that is a byte compare.
// Returns whether all the slice's values are probabilities (all_probabilities), checked on the way.
template <class P>
bool threshold_levels(const View3D<P>& proposal, index_t z, const std::vector<double>& thresholds,
                      std::uint8_t* levels) {
    std::vector<Above<P>> above;
    for (const double t : thresholds) above.emplace_back(t);
    constexpr index_t kBlock = 64;  // levels counted in 32-bit lanes (as wide as the compares), then narrowed
    std::int32_t count[kBlock];
    bool probabilities = true;
    std::uint8_t* out = levels;
    for_each_row(proposal, z * proposal.ny, (z + 1) * proposal.ny, [&](const P* values, index_t nx) {
        probabilities = probabilities && all_probabilities(values, nx);
        for (index_t x0 = 0; x0 < nx; x0 += kBlock) {
            const index_t n = std::min(kBlock, nx - x0);
            const P* v = values + x0;
            std::fill(count, count + kBlock, 0);
            for (const auto& a : above) {  // threshold-major: the inner loop vectorises
                const Above<P> cut = a;
                for (index_t i = 0; i < n; ++i) count[i] += cut(v[i]) ? 1 : 0;
            }
            for (index_t i = 0; i < n; ++i) out[x0 + i] = static_cast<std::uint8_t>(count[i]);
        }
        out += nx;
    });
    return probabilities;
}

// What every threshold of one slice reads, computed once per slice: the truth's components (runs
// and painted labels, for O(1) lookups), the proposal's threshold levels and the warp's mismatch
// candidates.
struct SliceInputs {
    RunLabels truth_runs;
    std::vector<std::uint32_t> truth_labels;
    std::vector<std::uint8_t> levels;
    SweepCandidates candidates;
    std::vector<std::size_t> threshold_order;  // costliest first (scoring_order)
    TruthSums truth_sums;
};

// The order in which to score a slice's thresholds: the most mismatches first (warped thresholds
// cost about in proportion), so that workers sharing a slice finish it together rather than one of
// them waiting for the other's last, largest warp.
inline void scoring_order(const SweepCandidates& c, const std::vector<double>& thresholds, std::size_t n_warp,
                          std::vector<std::size_t>& order) {
    std::vector<std::size_t> mismatches(thresholds.size(), 0);
    for (std::size_t t = 0; t < n_warp; ++t) {  // each side's mismatches at t are a prefix of its sorted list
        const auto p = [](std::uint64_t item, bool above) {
            const auto bits = static_cast<std::uint32_t>(item >> 32);
            return static_cast<double>(float_from_ordered_bits(above ? ~bits : bits));
        };
        const double th = thresholds[t];
        mismatches[t] = static_cast<std::size_t>(
            std::partition_point(c.above.begin(), c.above.end(), [&](std::uint64_t i) { return p(i, true) > th; }) - c.above.begin() +
            std::partition_point(c.below.begin(), c.below.end(), [&](std::uint64_t i) { return p(i, false) <= th; }) - c.below.begin());
    }
    order.resize(thresholds.size());
    for (std::size_t t = 0; t < order.size(); ++t) order[t] = t;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return mismatches[a] > mismatches[b]; });
}

// SliceInputs to reuse: a slice's are taken when its first task starts and given back when its last
// ends, so a sweep holds about one per worker, whatever the number of slices, and its buffers stay
// allocated (and in cache) from one slice to the next (and, through ScratchCache, to the next call).
class SliceInputsPool {
public:
    explicit SliceInputsPool(index_t plane) : plane_(plane) {}
    SliceInputs* acquire() {
        std::lock_guard<std::mutex> lock(mutex_);
        if (free_.empty()) {
            owned_.emplace_back(plane_);
            return owned_.back().get();
        }
        SliceInputs* inputs = free_.back();
        free_.pop_back();
        return inputs;
    }
    void release(SliceInputs* inputs) {
        std::lock_guard<std::mutex> lock(mutex_);
        free_.push_back(inputs);
    }

private:
    index_t plane_;
    std::mutex mutex_;
    std::vector<Scratch<SliceInputs>> owned_;
    std::vector<SliceInputs*> free_;
};

// Runs the sweep. truth: contiguous binary (Z, H, W). thresholds: all thresholds of the pixel/Rand
// sweep; the first n_warp of them also get the warping split/merger count. rows receives one row per
// threshold; slices_with_foreground the number of slices contributing to the Rand statistics. Returns
// false, with rows left empty, if the proposal is not a probability map (a value NaN, infinite or
// outside [0, 1]): the values are checked as they are read for the thresholds, and the sweep stops,
// so that callers validate the input without a pass of their own (summarise_rows can explain why).
//
// A slice's tasks are its two preparations (levels and candidates; truth components) and then its
// thresholds. A worker runs a whole slice's tasks in order, with the slice's inputs in its caches
// (7 % faster on 2 cores, 4 % on one, than preparing all slices first and then sharing each slice's
// thresholds among workers); idle workers join the last slices (parallel_for_groups), so that one
// slice keeps all workers busy too: one prepares the truth while the other reads the proposal, then
// both score thresholds.
template <class P>
bool isbi_sweep(const std::uint8_t* truth, const View3D<P>& proposal, const std::vector<double>& thresholds,
                std::size_t n_warp, int radius, unsigned threads, std::vector<SweepRow>& rows,
                std::int64_t& slices_with_foreground) {
    const index_t nz = proposal.nz, ny = proposal.ny, nx = proposal.nx, plane = ny * nx;
    if (!std::is_sorted(thresholds.begin(), thresholds.end()) || thresholds.size() > 255)
        throw std::invalid_argument("isbi_sweep: thresholds must be ascending (at most 255)");
    const std::size_t n_th = thresholds.size(), n_slices = static_cast<std::size_t>(nz);
    constexpr std::size_t kPreparations = 2;
    // a workspace per worker: no more workers than tasks
    const auto workers = static_cast<unsigned>(std::min<std::size_t>(resolve_threads(threads), n_slices * (kPreparations + n_th)));
    struct SliceState {
        std::once_flag acquired;
        SliceInputs* inputs = nullptr;
        std::atomic<int> prepared{0};
        std::atomic<std::size_t> finished{0};
    };
    const std::unique_ptr<SliceState[]> state(new SliceState[n_slices]);
    SliceInputsPool pool(plane);
    std::vector<Scratch<SweepWorkspace>> ws;
    for (unsigned w = 0; w < workers; ++w) ws.emplace_back(plane);
    std::vector<char> has_foreground(n_slices, 0);
    std::vector<SweepRow> per_task(n_th * n_slices);
    std::atomic<bool> stop{false}, probabilities{true};  // stop: a value is not a probability, or a task failed

    const auto prepare_levels = [&](std::size_t slice, SliceInputs& in, SweepWorkspace& s) {
        const auto z = static_cast<index_t>(slice);
        in.levels.resize(static_cast<std::size_t>(plane));
        if (!threshold_levels(proposal, z, thresholds, in.levels.data())) {
            probabilities = false, stop = true;
            return;
        }
        if (n_warp > 0) sweep_candidates(truth + z * plane, proposal, z, in.levels.data(), n_warp, s.candidate_scratch, in.candidates);
        scoring_order(in.candidates, thresholds, n_warp, in.threshold_order);
    };
    const auto prepare_truth = [&](std::size_t slice, SliceInputs& in, SweepWorkspace& s) {
        label_runs(truth + static_cast<index_t>(slice) * plane, 1, ny, nx, false, in.truth_runs);
        in.truth_sums = truth_sums(in.truth_runs, s.rand);
        in.truth_labels.resize(static_cast<std::size_t>(plane));
        paint_labels(in.truth_runs, in.truth_labels.data());
        has_foreground[slice] = !in.truth_runs.runs.empty();
    };
    const auto score = [&](std::size_t slice, std::size_t t, const SliceInputs& in, SweepWorkspace& s) {
        const auto z = static_cast<index_t>(slice);
        SweepRow& row = per_task[slice * n_th + t];
        const std::uint8_t* slice_levels = in.levels.data();
        const auto level = static_cast<std::uint8_t>(t);
        const auto target_row = [&](index_t y, std::uint64_t* words) {
            pack_greater(slice_levels + y * nx, nx, level, words);
        };
        label_runs_by_line(1, ny, nx, false, target_row, s.proposal_runs);
        pixel_and_rand_counts(in.truth_runs, in.truth_sums, s.proposal_runs, s.rand, row);
        if (t >= n_warp) return;
        s.warped.resize(static_cast<std::size_t>(plane));
        const auto warp = [&](WarpWorkspace& warp_ws, std::uint8_t* warped, std::vector<std::uint32_t>& survivors) {
            pad_slice_2d(truth + z * plane, ny, nx, warp_ws);
            sweep_mismatch_order(in.candidates, proposal, thresholds[t], s.order, warp_ws.live);
            relax_slice_2d(warp_ws, ny, nx, warped, survivors);
        };
        const WarpingCounts c = warp_and_classify_slice(warp, ny, nx, radius, s.warping, s.warped.data(), nullptr, false,
                                                        in.truth_labels.data(), in.truth_runs.count);
        row.splits = c.by_type[kSplit];
        row.mergers = c.by_type[kMerger];
    };
    parallel_for_groups(n_slices, kPreparations + n_th, workers, [&](std::size_t slice, std::size_t task, unsigned w) {
        SliceState& st = state[slice];
        try {
            std::call_once(st.acquired, [&] { st.inputs = pool.acquire(); });
            SliceInputs& in = *st.inputs;
            if (task == 0) {
                if (!stop) prepare_levels(slice, in, *ws[w]);
                ++st.prepared;
            } else if (task == 1) {
                if (!stop) prepare_truth(slice, in, *ws[w]);
                ++st.prepared;
            } else {
                // a helper may get here while the slice is still being prepared (by running workers)
                while (st.prepared.load() < static_cast<int>(kPreparations) && !stop) std::this_thread::yield();
                if (!stop) score(slice, in.threshold_order[task - kPreparations], in, *ws[w]);
            }
        } catch (...) {
            stop = true;  // releases the workers waiting for this slice; parallel_for rethrows
            throw;
        }
        if (++st.finished == kPreparations + n_th) pool.release(st.inputs);
    });
    rows.clear();
    slices_with_foreground = 0;
    if (!probabilities) return false;
    for (const char f : has_foreground) slices_with_foreground += f;
    rows.assign(n_th, SweepRow{});
    for (std::size_t task = 0; task < per_task.size(); ++task) rows[task % n_th] += per_task[task];
    return true;
}

}  // namespace unetsdk
