// pybind11 bindings of the header-only core (csrc/include/unetsdk): dtype dispatch, strides, GIL
// release and result structs. Argument semantics (shapes, ranges, NaN) are validated in Python
// (sdk/metrics/_validation.py); the checks here only guard memory safety.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string>
#include <utility>
#include <vector>

#include "unetsdk/components.hpp"
#include "unetsdk/contingency.hpp"
#include "unetsdk/isbi.hpp"
#include "unetsdk/scratch_cache.hpp"
#include "unetsdk/simple_point.hpp"
#include "unetsdk/thread_pool.hpp"
#include "unetsdk/value_summary.hpp"
#include "unetsdk/views.hpp"
#include "unetsdk/warping_error.hpp"
#include "unetsdk/watershed.hpp"

namespace py = pybind11;
using namespace unetsdk;

namespace {

template <class T>
View3D<T> view3d(const py::array& a) {
    if (a.ndim() != 3) throw std::invalid_argument("internal: expected a 3-d array");
    return View3D<T>{static_cast<const char*>(a.data()), a.shape(0), a.shape(1), a.shape(2),
                     a.strides(0), a.strides(1), a.strides(2)};
}

std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// The core reads values in native byte order; sdk.metrics converts other arrays once, before the call.
void check_native(const py::array& a) {
    if (!a.dtype().attr("isnative").cast<bool>())
        throw std::invalid_argument("internal: dtype " + dtype_name(a) + " is not in native byte order");
}

// Calls fn(T{}) with T the C++ type of a's dtype among the numeric types numpy uses for images.
template <class Fn>
void dispatch_numeric(const py::array& a, Fn&& fn) {
    check_native(a);
    const char kind = a.dtype().kind();
    const auto size = a.itemsize();
    if (kind == 'b') return fn(std::uint8_t{});
    if (kind == 'u') {
        if (size == 1) return fn(std::uint8_t{});
        if (size == 2) return fn(std::uint16_t{});
        if (size == 4) return fn(std::uint32_t{});
        if (size == 8) return fn(std::uint64_t{});
    }
    if (kind == 'i') {
        if (size == 1) return fn(std::int8_t{});
        if (size == 2) return fn(std::int16_t{});
        if (size == 4) return fn(std::int32_t{});
        if (size == 8) return fn(std::int64_t{});
    }
    if (kind == 'f') {
        if (size == 4) return fn(float{});
        if (size == 8) return fn(double{});
    }
    throw std::invalid_argument("unsupported dtype " + dtype_name(a));
}

// Proposals: float32, float64 or bool (as 0/1).
template <class Fn>
void dispatch_proposal(const py::array& a, Fn&& fn) {
    check_native(a);
    const char kind = a.dtype().kind();
    if (kind == 'b') return fn(std::uint8_t{});
    if (kind == 'f' && a.itemsize() == 4) return fn(float{});
    if (kind == 'f' && a.itemsize() == 8) return fn(double{});
    throw std::invalid_argument("unsupported proposal dtype " + dtype_name(a));
}

// Foreground (value > 0) of a 3-d array as a contiguous uint8 buffer, slices in parallel.
std::vector<std::uint8_t> foreground(const py::array& a, unsigned threads) {
    std::vector<std::uint8_t> out(static_cast<std::size_t>(a.size()));
    dispatch_numeric(a, [&](auto tag) {
        using T = decltype(tag);
        const View3D<T> v = view3d<T>(a);
        py::gil_scoped_release release;
        parallel_for(static_cast<std::size_t>(v.nz), resolve_threads(threads),
                     [&](std::size_t z, unsigned) { binarize_truth(v, out.data(), static_cast<index_t>(z), static_cast<index_t>(z) + 1); });
    });
    return out;
}

void check_same_shape(const py::array& a, const py::array& b) {
    if (a.ndim() != b.ndim()) throw std::invalid_argument("internal: arrays differ in ndim");
    for (py::ssize_t k = 0; k < a.ndim(); ++k)
        if (a.shape(k) != b.shape(k)) throw std::invalid_argument("internal: arrays differ in shape");
}

// Splits rows of a 3-d array into one part per worker (at most one per 256 K values).
template <class T, class Fn>
void for_row_parts(const View3D<T>& v, unsigned threads, Fn&& fn) {
    const index_t rows = v.nz * v.ny;
    const unsigned workers = static_cast<unsigned>(std::min<index_t>(resolve_threads(threads), std::max<index_t>(1, v.size() >> 18)));
    parallel_for(workers, workers, [&](std::size_t w, unsigned) {
        fn(w, rows * static_cast<index_t>(w) / workers, rows * static_cast<index_t>(w + 1) / workers);
    });
}

template <class T>
ValueSummary summarise(const View3D<T>& v, unsigned threads) {
    std::vector<ValueSummary> parts(resolve_threads(threads));
    for_row_parts(v, threads, [&](std::size_t w, index_t row0, index_t row1) { parts[w] = summarise_rows(v, row0, row1); });
    ValueSummary total;
    for (const auto& part : parts) total += part;
    return total;
}

py::tuple summary_tuple(const ValueSummary& s) { return py::make_tuple(s.finite, s.lo, s.hi); }

py::tuple py_proposal_summary(const py::array& p, unsigned threads) {
    ValueSummary total;
    dispatch_proposal(p, [&](auto tag) {
        using T = decltype(tag);
        const View3D<T> v = view3d<T>(p);
        py::gil_scoped_release release;
        total = summarise(v, threads);
    });
    return summary_tuple(total);
}

// None if all values are probabilities (the fast check), else their summary (which says why not).
py::object py_probability_violation(const py::array& p, unsigned threads) {
    bool all = true;
    ValueSummary total;
    dispatch_proposal(p, [&](auto tag) {
        using T = decltype(tag);
        const View3D<T> v = view3d<T>(p);
        py::gil_scoped_release release;
        std::vector<char> parts(resolve_threads(threads), 1);
        for_row_parts(v, threads, [&](std::size_t w, index_t row0, index_t row1) { parts[w] = rows_are_probabilities(v, row0, row1); });
        for (const char part : parts) all = all && part;
        if (!all) total = summarise(v, threads);
    });
    if (all) return py::none();
    return summary_tuple(total);
}

py::dict py_warping_error(const py::array& truth, const py::array& proposal, const py::object& mask, double threshold,
                       int radius, bool volumetric, unsigned threads) {
    check_same_shape(truth, proposal);
    const std::vector<std::uint8_t> fg = foreground(truth, threads);
    std::vector<std::uint8_t> mask_fg;
    if (!mask.is_none()) {
        const py::array m = mask.cast<py::array>();
        check_same_shape(truth, m);
        mask_fg = foreground(m, threads);
    }
    py::array_t<std::uint8_t> warped({truth.shape(0), truth.shape(1), truth.shape(2)});
    py::array_t<std::uint8_t> classification({truth.shape(0), truth.shape(1), truth.shape(2)});
    WarpingCounts counts;
    dispatch_proposal(proposal, [&](auto tag) {
        using P = decltype(tag);
        const View3D<P> v = view3d<P>(proposal);
        std::uint8_t* w = warped.mutable_data();
        std::uint8_t* c = classification.mutable_data();
        const std::uint8_t* m = mask_fg.empty() ? nullptr : mask_fg.data();
        py::gil_scoped_release release;
        counts = volumetric ? warping_error_3d(fg.data(), v, m, threshold, radius, w, c)
                            : warping_error_2d(fg.data(), v, m, threshold, radius, threads, w, c);
    });
    // One table of the error types' Python names serves the pixel counts and the cluster counts.
    static const std::pair<const char*, int> kTypeNames[] = {
        {"splits", kSplit},
        {"mergers", kMerger},
        {"hole_additions", kHoleAddition},
        {"hole_deletions", kHoleDeletion},
        {"object_additions", kObjectAddition},
        {"object_deletions", kObjectDeletion},
    };
    py::dict out;
    py::dict clusters;
    out["mismatches"] = counts.mismatches;
    for (const auto& [name, type] : kTypeNames) {
        out[name] = counts.by_type[type];
        clusters[name] = counts.clusters[type];
    }
    out["clusters"] = clusters;
    out["warped"] = warped;
    out["classification"] = classification;
    return out;
}

py::dict py_isbi_sweep(const py::array& truth, const py::array& proposal, const std::vector<double>& thresholds,
                    std::size_t n_warp, int radius, unsigned threads) {
    check_same_shape(truth, proposal);
    if (n_warp > thresholds.size()) throw std::invalid_argument("internal: n_warp exceeds the thresholds");
    const std::vector<std::uint8_t> fg = foreground(truth, threads);
    std::vector<SweepRow> rows;
    std::int64_t slices_with_foreground = 0;
    bool probabilities = true;
    dispatch_proposal(proposal, [&](auto tag) {
        using P = decltype(tag);
        const View3D<P> v = view3d<P>(proposal);
        py::gil_scoped_release release;
        probabilities = isbi_sweep(fg.data(), v, thresholds, n_warp, radius, threads, rows, slices_with_foreground);
    });
    const auto column = [&](std::int64_t SweepRow::*field) {
        py::array_t<std::int64_t> col(static_cast<py::ssize_t>(rows.size()));
        for (std::size_t i = 0; i < rows.size(); ++i) col.mutable_at(i) = rows[i].*field;
        return col;
    };
    py::dict out;
    out["splits"] = column(&SweepRow::splits);
    out["mergers"] = column(&SweepRow::mergers);
    out["pixel_tp"] = column(&SweepRow::pixel_tp);
    out["pixel_fp"] = column(&SweepRow::pixel_fp);
    out["pixel_fn"] = column(&SweepRow::pixel_fn);
    out["rand_tp"] = column(&SweepRow::rand_tp);
    out["rand_fp"] = column(&SweepRow::rand_fp);
    out["rand_fn"] = column(&SweepRow::rand_fn);
    out["rand_slices"] = slices_with_foreground;
    out["probabilities"] = probabilities;
    return out;
}

// Label arrays are read as unsigned integers of their width: equality of bits is equality of labels.
template <class Fn>
void dispatch_label_bits(const py::array& a, Fn&& fn) {
    check_native(a);
    const char kind = a.dtype().kind();
    if (kind != 'b' && kind != 'u' && kind != 'i') throw std::invalid_argument("unsupported label dtype " + dtype_name(a));
    switch (a.itemsize()) {
        case 1: return fn(std::uint8_t{});
        case 2: return fn(std::uint16_t{});
        case 4: return fn(std::uint32_t{});
        case 8: return fn(std::uint64_t{});
        default: throw std::invalid_argument("unsupported label dtype " + dtype_name(a));
    }
}

template <class T, class Alloc>
py::array_t<T> to_numpy(std::vector<T, Alloc>&& v) {
    using Vector = std::vector<T, Alloc>;
    auto* heap = new Vector(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<Vector*>(p); });
    return py::array_t<T>(static_cast<py::ssize_t>(heap->size()), heap->data(), owner);
}

// Calls count(A{}, B{}, pa, pb, shape, strides_a, strides_b, a_signed, b_signed, workspace) for two label
// arrays of equal shape, A / B their label bits' types, with the GIL released. The scratch memory is
// kept for later calls (an evaluation run reuses its pages) when it is small: at most
// kMaxCachedContingencyBytes per workspace, a workspace per hardware thread (ScratchCache).
template <class Count>
void with_label_arrays(const py::array& a, const py::array& b, Count&& count) {
    check_same_shape(a, b);
    std::vector<std::int64_t> shape, sa, sb;
    for (py::ssize_t k = 0; k < a.ndim(); ++k) {
        shape.push_back(a.shape(k));
        sa.push_back(a.strides(k));
        sb.push_back(b.strides(k));
    }
    const bool a_signed = a.dtype().kind() == 'i', b_signed = b.dtype().kind() == 'i';
    dispatch_label_bits(a, [&](auto ta) {
        dispatch_label_bits(b, [&](auto tb) {
            const char* pa = static_cast<const char*>(a.data());
            const char* pb = static_cast<const char*>(b.data());
            py::gil_scoped_release release;
            Scratch<ContingencyWorkspace> workspace(0);
            count(ta, tb, pa, pb, shape, sa, sb, a_signed, b_signed, *workspace);
            if (workspace->bytes() > kMaxCachedContingencyBytes) *workspace = ContingencyWorkspace{};
        });
    });
}

py::tuple py_contingency_table(const py::array& a, const py::array& b, unsigned threads) {
    Contingency table;
    with_label_arrays(a, b, [&](auto ta, auto tb, const char* pa, const char* pb, const auto& shape, const auto& sa,
                                const auto& sb, bool a_signed, bool b_signed, ContingencyWorkspace& ws) {
        table = contingency_table<decltype(ta), decltype(tb)>(pa, pb, shape, sa, sb, a_signed, b_signed, threads, &ws);
    });
    return py::make_tuple(to_numpy(std::move(table.truth_values)), to_numpy(std::move(table.proposal_values)),
                          to_numpy(std::move(table.rows)), to_numpy(std::move(table.cols)),
                          to_numpy(std::move(table.counts)), to_numpy(std::move(table.truth_sizes)),
                          to_numpy(std::move(table.proposal_sizes)));
}

py::int_ to_python(const UInt128& x) { return (py::int_(x.hi) << py::int_(64)) | py::int_(x.lo); }

py::dict py_contingency_summary(const py::array& a, const py::array& b,
                                const py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>& ignore,
                                unsigned threads) {
    const std::vector<std::uint64_t> ignore_bits(ignore.data(), ignore.data() + ignore.size());
    ContingencySummary s;
    with_label_arrays(a, b, [&](auto ta, auto tb, const char* pa, const char* pb, const auto& shape, const auto& sa,
                                const auto& sb, bool a_signed, bool b_signed, ContingencyWorkspace& ws) {
        s = contingency_summary<decltype(ta), decltype(tb)>(pa, pb, shape, sa, sb, a_signed, b_signed, ignore_bits,
                                                            threads, &ws);
    });
    py::dict out;
    out["total"] = s.total;
    out["sum_sq_counts"] = to_python(s.sum_sq_counts);
    out["sum_sq_truth"] = to_python(s.sum_sq_truth);
    out["sum_sq_proposal"] = to_python(s.sum_sq_proposal);
    out["xlogx_counts"] = s.xlogx_counts;
    out["xlogx_truth"] = s.xlogx_truth;
    out["xlogx_proposal"] = s.xlogx_proposal;
    out["zero_total"] = s.zero_total;
    out["zero_sum_sq_counts"] = to_python(s.zero_sum_sq_counts);
    return out;
}

py::array_t<std::uint8_t> py_simple_table_2d() {
    const auto& t = topology::simple_table_2d();
    py::array_t<std::uint8_t> out(256);
    for (int i = 0; i < 256; ++i) out.mutable_at(i) = t[static_cast<std::size_t>(i)];
    return out;
}

// Connected components of the foreground (value > 0) of a (Z, H, W) array: 1..n, 0 = background.
py::tuple py_label_components(const py::array& mask, bool volumetric, bool full) {
    const std::vector<std::uint8_t> fg = foreground(mask, 1);
    py::array_t<std::uint32_t> labels({mask.shape(0), mask.shape(1), mask.shape(2)});
    std::uint32_t count = 0;
    {
        std::uint32_t* out = labels.mutable_data();
        py::gil_scoped_release release;
        RunLabels rl;
        label_runs(fg.data(), mask.shape(0), mask.shape(1), mask.shape(2), volumetric, rl, full);
        paint_labels(rl, out);
        count = rl.count;
    }
    return py::make_tuple(labels, count);
}

// Seeded watershed of C-contiguous (Z, H, W) arrays: floods `labels` (uint32 seeds, changed in place) by
// increasing `priority` (float32/float64) within `mask` (uint8 or None); each slice on its own unless
// `volumetric`, slices in parallel.
void py_seeded_watershed(const py::array& priority, py::array_t<std::uint32_t, py::array::c_style>& labels,
                         const py::object& mask, bool volumetric, bool full, bool lines, unsigned threads) {
    if (priority.ndim() != 3 || labels.ndim() != 3 || !(priority.flags() & py::array::c_style))
        throw std::invalid_argument("internal: expected C-contiguous 3-d priority and labels");
    for (int k = 0; k < 3; ++k)
        if (priority.shape(k) != labels.shape(k)) throw std::invalid_argument("internal: shapes differ");
    check_native(priority);
    py::array_t<std::uint8_t, py::array::c_style> mask_array;
    if (!mask.is_none()) {
        mask_array = mask.cast<py::array_t<std::uint8_t, py::array::c_style>>();
        if (mask_array.ndim() != 3 || mask_array.size() != labels.size())
            throw std::invalid_argument("internal: mask shape differs");
    }
    const index_t nz = labels.shape(0), ny = labels.shape(1), nx = labels.shape(2);
    std::uint32_t* out = labels.mutable_data();
    const std::uint8_t* m = mask.is_none() ? nullptr : mask_array.data();
    const auto run = [&](auto tag) {
        using P = decltype(tag);
        const P* pr = static_cast<const P*>(priority.data());
        py::gil_scoped_release release;
        if (volumetric) return seeded_flood(pr, m, out, nz, ny, nx, full, lines);
        const index_t plane = ny * nx;
        parallel_for(static_cast<std::size_t>(nz), resolve_threads(threads), [&](std::size_t z, unsigned) {
            const index_t o = static_cast<index_t>(z) * plane;
            seeded_flood(pr + o, m ? m + o : nullptr, out + o, 1, ny, nx, full, lines);
        });
    };
    if (priority.dtype().is(py::dtype::of<float>())) return run(float{});
    if (priority.dtype().is(py::dtype::of<double>())) return run(double{});
    throw std::invalid_argument("internal: priority must be float32 or float64, got " + dtype_name(priority));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "unet-sdk C++ metrics core (header-only library in csrc/include/unetsdk). Internal: use sdk.metrics.";
    m.def("proposal_summary", &py_proposal_summary, py::arg("proposal"), py::arg("threads"),
          "(all_finite, min, max) of a 3-d float32/float64/bool array (min/max of the non-NaN values).");
    m.def("probability_violation", &py_probability_violation, py::arg("proposal"), py::arg("threads"),
          "None if all values of a 3-d float32/float64/bool array lie in [0, 1], else (all_finite, min, max).");
    m.def("warping_error", &py_warping_error, py::arg("truth"), py::arg("proposal"), py::arg("mask"),
          py::arg("threshold"), py::arg("radius"), py::arg("volumetric"), py::arg("threads"),
          "Warp and classify a (Z, H, W) stack (2D per slice) or volume (3D).");
    m.def("isbi_sweep", &py_isbi_sweep, py::arg("truth"), py::arg("proposal"), py::arg("thresholds"),
          py::arg("n_warp"), py::arg("radius"), py::arg("threads"),
          "Per-threshold ISBI 2012 accumulators of a (Z, H, W) stack.");
    m.def("contingency_table", &py_contingency_table, py::arg("truth"), py::arg("proposal"), py::arg("threads"),
          "Sparse contingency table: (truth_bits, proposal_bits, rows, cols, counts, truth_sizes, proposal_sizes).");
    m.def("contingency_summary", &py_contingency_summary, py::arg("truth"), py::arg("proposal"), py::arg("ignore_bits"),
          py::arg("threads"),
          "Sums of the contingency table over truth labels not in ignore_bits (label bits as uint64): total, "
          "sum_sq_{counts,truth,proposal}, xlogx_{counts,truth,proposal} (log2), zero_total, zero_sum_sq_counts.");
    m.def("label_components", &py_label_components, py::arg("mask"), py::arg("volumetric"), py::arg("full"),
          "(labels uint32 (Z, H, W), count): components of mask > 0, per slice or in 3D, face or full connectivity.");
    m.def("seeded_watershed", &py_seeded_watershed, py::arg("priority"), py::arg("labels"), py::arg("mask"),
          py::arg("volumetric"), py::arg("full"), py::arg("lines"), py::arg("threads"),
          "Flood uint32 seeds (Z, H, W) in place by increasing priority within mask (or None), per slice or "
          "in 3D; lines=True leaves one-pixel watershed lines (label 0) between regions.");
    m.def("release_memory",
          [] {
              release_scratch_memory();
#ifdef __GLIBC__
              malloc_trim(0);  // and what the allocator keeps of freed memory
#endif
          },
          "Frees the scratch memory the metrics keep between calls (workspaces of small images).");
    m.def("contingency_cache_bytes",
          [] { return ScratchCache<ContingencyWorkspace>::total([](const ContingencyWorkspace& w) { return w.bytes(); }); },
          "Bytes held by the contingency workspaces kept between calls.");
    m.def("max_threads", [] { return kMaxThreadsPerCore * hardware_threads(); },
          "Most threads a call starts: kMaxThreadsPerCore per hardware thread.");
    m.def("simple_table_2d", &py_simple_table_2d, "The 256-entry 2D simple-point table (fg 4-, bg 8-connected).");
    m.def("is_simple_3d", &topology::is_simple_3d, py::arg("code"),
          "Is the centre of a 3x3x3 neighbourhood simple (fg 6-, bg 26-connected)? Bit k = neighbour k in "
          "raster order (dz, dy, dx), centre skipped.");
}
