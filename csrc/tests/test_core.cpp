// Tests of the header-only core, and an example of using it from C++ without Python.
// Built and run by plain CMake + ctest (tests/test_core_cpp.py drives it from pytest).
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
#ifdef __GLIBC__
#include <pthread.h>
#endif

#include "unetsdk/components.hpp"
#include "unetsdk/contingency.hpp"
#include "unetsdk/isbi.hpp"
#include "unetsdk/simple_point.hpp"
#include "unetsdk/thread_pool.hpp"
#include "unetsdk/warping_error.hpp"
#include "unetsdk/watershed.hpp"

using namespace unetsdk;

static int failures = 0;
#define CHECK(cond)                                                    \
    do {                                                               \
        if (!(cond)) {                                                 \
            std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                \
        }                                                              \
    } while (0)

// 2D neighbourhood code from a 3x3 patch given row by row (centre ignored).
static unsigned code2d(const char* rows) {
    unsigned code = 0;
    for (int k = 0; k < 8; ++k) {
        const int y = topology::kOffsets2D[k][0] + 1, x = topology::kOffsets2D[k][1] + 1;
        if (rows[y * 3 + x] == '#') code |= 1u << k;
    }
    return code;
}

// 3D code from a predicate over offsets.
template <class Pred>
static std::uint32_t code3d(Pred fg) {
    const auto& a = topology::adjacency_3d();
    std::uint32_t code = 0;
    for (int k = 0; k < 26; ++k)
        if (fg(a.offset[k][0], a.offset[k][1], a.offset[k][2])) code |= 1u << k;
    return code;
}

static void test_simple_points_2d() {
    const auto& simple = topology::simple_table_2d();
    CHECK(!simple[code2d("........." )]);  // isolated pixel: deleting it removes an object
    CHECK(!simple[code2d("#########")]);   // interior pixel: flipping it makes a hole
    CHECK(simple[code2d(".#.......")]);    // end of a line
    CHECK(simple[code2d("###......")]);    // on a straight border
    CHECK(!simple[code2d("...#.#...")]);   // bridge between two 4-neighbours
    CHECK(!simple[code2d("#.......#")]);   // two diagonal corners only: no 4-adjacent foreground
    CHECK(!simple[code2d("##.....#.")]);   // two foreground components touching the centre
    CHECK(simple[code2d("###.....#")]);    // a diagonal-only corner object is not affected
}

static void test_simple_points_3d() {
    CHECK(!topology::is_simple_3d(0));                                       // isolated voxel
    CHECK(!topology::is_simple_3d((1u << 26) - 1));                          // interior voxel
    CHECK(topology::is_simple_3d(code3d([](int z, int, int) { return z == -1; })));  // on a flat face
    CHECK(topology::is_simple_3d(code3d([](int z, int y, int x) { return z == -1 && y == 0 && x == 0; })));
    CHECK(!topology::is_simple_3d(code3d([](int z, int y, int x) { return y == 0 && x == 0 && z != 0; })));  // bridge
    // the hole of an in-plane ring: filling it closes a tunnel
    CHECK(!topology::is_simple_3d(code3d([](int z, int, int) { return z == 0; })));
    // a corner neighbour alone is not 6-adjacent: the voxel would be a new object
    CHECK(!topology::is_simple_3d(code3d([](int z, int y, int x) { return z == 1 && y == 1 && x == 1; })));
}

static void test_components() {
    // two 4-components that are one 8-component
    const std::uint8_t img[3 * 4] = {1, 1, 0, 0,
                                     0, 0, 1, 1,
                                     0, 0, 0, 0};
    RunLabels runs;
    label_runs(img, 1, 3, 4, false, runs);
    CHECK(runs.count == 2);
    label_runs(img, 1, 3, 4, false, runs, true);
    CHECK(runs.count == 1);
    std::vector<std::uint32_t> labels(12);
    label_runs(img, 1, 3, 4, false, runs);
    paint_labels(runs, labels.data());
    CHECK(labels[0] == 1 && labels[1] == 1 && labels[6] == 2 && labels[2] == 0);
    // 3D: two voxels stacked in z are one 6-component; diagonal in z only 26-connected
    const std::uint8_t vol[2 * 1 * 2] = {1, 0, 0, 1};
    label_runs(vol, 2, 1, 2, true, runs);
    CHECK(runs.count == 2);
    label_runs(vol, 2, 1, 2, true, runs, true);
    CHECK(runs.count == 1);
}

// Two cells separated by a vertical membrane; the proposal opens a 2-pixel gap in it: the warp cannot
// flip those pixels (each would merge the cells), so they remain as mergers.
static void test_warping_merger() {
    const index_t h = 6, w = 7;
    std::vector<std::uint8_t> truth(h * w, 1);
    std::vector<float> proposal(h * w, 0.9f);
    for (index_t y = 0; y < h; ++y) {
        truth[y * w + 3] = 0;
        proposal[y * w + 3] = (y == 2 || y == 3) ? 0.8f : 0.1f;
    }
    const View3D<float> view{reinterpret_cast<const char*>(proposal.data()), 1, h, w,
                             static_cast<index_t>(h * w * sizeof(float)), static_cast<index_t>(w * sizeof(float)),
                             sizeof(float)};
    std::vector<std::uint8_t> warped(h * w), classes(h * w);
    const WarpingCounts c = warping_error_2d(truth.data(), view, nullptr, 0.5, 20, 2, warped.data(), classes.data());
    CHECK(c.mismatches == 2);
    CHECK(c.by_type[kMerger] == 2);
    CHECK(c.clusters[kMerger] == 1);
    CHECK(classes[2 * w + 3] == kMerger && classes[3 * w + 3] == kMerger);
    // identical proposal: nothing left
    std::vector<float> same(truth.begin(), truth.end());
    const View3D<float> same_view{reinterpret_cast<const char*>(same.data()), 1, h, w,
                                  static_cast<index_t>(h * w * sizeof(float)), static_cast<index_t>(w * sizeof(float)),
                                  sizeof(float)};
    CHECK(warping_error_2d(truth.data(), same_view, nullptr, 0.5, 20, 1, warped.data(), classes.data()).mismatches == 0);

    // the ISBI sweep on the same pair: at thresholds below 0.8 the gap is foreground (2 merger pixels)
    std::vector<double> thresholds = {0.0, 0.5, 0.85};
    std::vector<SweepRow> rows;
    std::int64_t rand_slices = 0;
    CHECK(isbi_sweep(truth.data(), view, thresholds, 3, 20, 2, rows, rand_slices));
    CHECK(rand_slices == 1);
    CHECK(rows.size() == 3 && rows[1].mergers == 2 && rows[2].mergers == 0 && rows[0].splits == 0);
    CHECK(rows[2].pixel_fp == 0 && rows[2].pixel_fn == 0);
    // a value outside [0, 1] stops the sweep; the summary says why
    proposal[5] = 1.5f;
    CHECK(!isbi_sweep(truth.data(), view, thresholds, 3, 20, 2, rows, rand_slices) && rows.empty());
    const ValueSummary summary = summarise_rows(view, 0, h);
    CHECK(summary.finite && summary.lo == 0.1f && summary.hi == 1.5);
}

static void test_contingency() {
    const std::uint32_t a[6] = {1, 1, 2, 2, 2, 7};
    const std::uint64_t b[6] = {5, 5, 5, 9, 9, 9};
    const Contingency t = contingency_table<std::uint32_t, std::uint64_t>(
        reinterpret_cast<const char*>(a), reinterpret_cast<const char*>(b), {6}, {4}, {8}, false, false, 1);
    CHECK(t.truth_values.size() == 3 && t.proposal_values.size() == 2 && t.counts.size() == 4);
    std::int64_t total = 0, c22 = -1;
    for (std::size_t k = 0; k < t.counts.size(); ++k) {
        total += t.counts[k];
        if (t.truth_values[t.rows[k]] == 2 && t.proposal_values[t.cols[k]] == 9) c22 = t.counts[k];
    }
    CHECK(total == 6 && c22 == 2);
    CHECK(t.truth_values[0] == 1 && t.truth_values[2] == 7);  // labels sorted by value
    // signed labels order as signed values: -1 before 3
    const std::int32_t s[3] = {3, -1, 3};
    const Contingency u = contingency_table<std::uint32_t, std::uint32_t>(
        reinterpret_cast<const char*>(s), reinterpret_cast<const char*>(s), {3}, {4}, {4}, true, true, 2);
    CHECK(u.truth_values.size() == 2 && static_cast<std::int32_t>(u.truth_values[0]) == -1);
    CHECK(u.rows.size() == 2 && u.rows[0] == 0 && u.cols[0] == 0 && u.counts[1] == 2);
}

// Labels spread too wide for direct ids are renumbered by sorting (dense_ids): the table equals that of
// the same partition with small labels, whatever the number of threads (several sorted parts merged).
static void test_contingency_wide_labels() {
    const std::size_t n = 600000;  // above kParallelElements: one block per thread
    std::vector<std::uint64_t> wide(n), small(n), proposal(n);
    for (std::size_t i = 0; i < n; ++i) {
        small[i] = (i * 7919 / 13) % 1000;
        wide[i] = small[i] << 40;
        proposal[i] = i % 37 == 0 ? ~std::uint64_t(0) - i : i / 1000;  // direct for the first elements only
    }
    const auto table = [&](const std::vector<std::uint64_t>& a, unsigned threads) {
        return contingency_table<std::uint64_t, std::uint64_t>(reinterpret_cast<const char*>(a.data()),
                                                              reinterpret_cast<const char*>(proposal.data()),
                                                              {std::int64_t(n)}, {8}, {8}, false, false, threads);
    };
    const Contingency expected = table(small, 1);
    CHECK(expected.truth_values.size() == 1000 && expected.truth_values[999] == 999);
    for (const unsigned threads : {1u, 2u, 3u}) {
        const Contingency t = table(wide, threads);
        CHECK(t.truth_values.size() == 1000 && t.truth_values[999] == std::uint64_t(999) << 40);
        CHECK(t.proposal_values == expected.proposal_values && t.truth_sizes == expected.truth_sizes);
        CHECK(t.rows == expected.rows && t.cols == expected.cols && t.counts == expected.counts);
    }
}

// Classification with component labels taken from the truth (the ISBI sweep's shortcut, which
// follows added pixels to never-flipped ones) must equal classification by labelling the warped
// image, on many random small images (noise images warp whole components of added pixels too).
static void test_classification_from_truth_labels() {
    std::uint64_t state = 12345;
    const auto next = [&state] {  // xorshift64
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        return state;
    };
    long compared = 0, mismatched = 0;
    for (int trial = 0; trial < 3000; ++trial) {
        const index_t ny = 6 + static_cast<index_t>(next() % 20), nx = 6 + static_cast<index_t>(next() % 20);
        const auto n = static_cast<std::size_t>(ny * nx);
        const unsigned density = 30 + static_cast<unsigned>(next() % 50), flips = 5 + static_cast<unsigned>(next() % 40);
        std::vector<std::uint8_t> truth(n);
        std::vector<float> proposal(n);
        for (std::size_t i = 0; i < n; ++i) {
            truth[i] = next() % 100 < density ? 1 : 0;
            const bool flip = next() % 100 < flips;
            proposal[i] = static_cast<float>((truth[i] != flip ? 0.6 : 0.0) + static_cast<double>(next() % 5) / 10.0);
        }
        const View3D<float> view{reinterpret_cast<const char*>(proposal.data()), 1, ny, nx,
                                 static_cast<index_t>(n * 4), nx * 4, 4};
        WarpWorkspace warp;
        std::vector<std::uint8_t> warped(n);
        std::vector<std::uint32_t> survivors;
        warp_slice_2d(truth.data(), view, 0, nullptr, 0.5, warp, warped.data(), survivors);
        RunLabels runs;
        label_runs(truth.data(), 1, ny, nx, false, runs);
        std::vector<std::uint32_t> labels(n);
        paint_labels(runs, labels.data());
        ClassifyWorkspace ws_truth, ws_warped;
        std::vector<std::uint8_t> from_truth(survivors.size()), from_warped(survivors.size());
        const int radius = 1 + static_cast<int>(next() % 4);
        classify_mismatches(warped.data(), 1, ny, nx, false, survivors.data(), survivors.size(), radius, ws_truth,
                            from_truth.data(), labels.data(), runs.count);
        classify_mismatches(warped.data(), 1, ny, nx, false, survivors.data(), survivors.size(), radius, ws_warped,
                            from_warped.data());
        compared += static_cast<long>(survivors.size());
        for (std::size_t i = 0; i < survivors.size(); ++i) mismatched += from_truth[i] != from_warped[i];
    }
    CHECK(compared > 50000);
    CHECK(mismatched == 0);
}

static void test_parallel_for() {
    std::atomic<long> sum{0};
    parallel_for(1000, 4, [&](std::size_t i, unsigned) { sum += static_cast<long>(i); });
    CHECK(sum == 999L * 1000 / 2);
    bool thrown = false;
    try {
        parallel_for(10, 2, [](std::size_t i, unsigned) { if (i == 3) throw std::runtime_error("task"); });
    } catch (const std::runtime_error&) {
        thrown = true;
    }
    CHECK(thrown);
    // grouped: every (group, item) exactly once, with fewer, as many and more workers than groups
    for (const unsigned threads : {1u, 2u, 3u, 8u}) {
        for (const std::size_t groups : {std::size_t(1), std::size_t(2), std::size_t(7)}) {
            std::vector<std::atomic<int>> calls(groups * 5);
            std::atomic<bool> bad_worker{false};
            parallel_for_groups(groups, 5, threads, [&](std::size_t g, std::size_t i, unsigned w) {
                ++calls[g * 5 + i];
                if (w >= threads) bad_worker = true;
            });
            bool once = true;
            for (const auto& c : calls) once = once && c == 1;
            CHECK(once && !bad_worker);
        }
    }
}

// Threads the system refuses to start (here: every one, their stacks could not be mapped) leave the
// work to the threads that started, the calling one among them; nothing terminates.
static void test_thread_start_failure() {
#ifdef __GLIBC__
    pthread_attr_t normal, huge;
    CHECK(pthread_getattr_default_np(&normal) == 0);
    CHECK(pthread_attr_init(&huge) == 0);
    CHECK(pthread_attr_setstacksize(&huge, std::size_t(1) << 62) == 0);  // more than any address space
    CHECK(pthread_setattr_default_np(&huge) == 0);
    std::atomic<long> sum{0};
    parallel_for(1000, 8, [&](std::size_t i, unsigned) { sum += static_cast<long>(i); });
    CHECK(sum == 999L * 1000 / 2);
    std::atomic<int> calls{0};
    parallel_for_groups(3, 4, 8, [&](std::size_t, std::size_t, unsigned) { ++calls; });
    CHECK(calls == 12);
    // a sweep whose helpers wait for preparations done by other workers still finishes
    const index_t h = 16, w = 16;
    std::vector<std::uint8_t> truth(static_cast<std::size_t>(h * w), 1);
    std::vector<float> proposal(truth.size(), 0.7f);
    const View3D<float> view{reinterpret_cast<const char*>(proposal.data()), 1, h, w, h * w * 4, w * 4, 4};
    std::vector<SweepRow> rows;
    std::int64_t rand_slices = 0;
    CHECK(isbi_sweep(truth.data(), view, {0.0, 0.5, 0.9}, 2, 20, 8, rows, rand_slices) && rows.size() == 3);
    CHECK(pthread_setattr_default_np(&normal) == 0);
    pthread_attr_destroy(&huge);
    pthread_attr_destroy(&normal);
#endif
}

// Requested threads are capped at kMaxThreadsPerCore per hardware thread; 0 means one per hardware thread.
static void test_resolve_threads() {
    CHECK(resolve_threads(0) == hardware_threads());
    CHECK(resolve_threads(1) == 1);
    CHECK(resolve_threads(~0u) == kMaxThreadsPerCore * hardware_threads());
}

// Arrays may start at any byte offset (numpy views of a bytes buffer): values are read without
// misaligned loads (run under -fsanitize=undefined with -fno-sanitize-recover in CI).
static void test_unaligned_reads() {
    const double values[6] = {0.0, 0.25, 0.5, 0.75, 1.0, 0.5};
    std::vector<char> buffer(sizeof values + 1);
    std::memcpy(buffer.data() + 1, values, sizeof values);
    const View3D<double> view{buffer.data() + 1, 1, 2, 3, 48, 24, 8};
    CHECK(view(0, 1, 1) == 1.0 && view.at_row(view.row(0, 0), 2) == 0.5);
    const ValueSummary s = summarise_rows(view, 0, 2);
    CHECK(s.finite && s.lo == 0.0 && s.hi == 1.0);
    CHECK(rows_are_probabilities(view, 0, 2));
    std::vector<std::uint8_t> fg(6);
    binarize_truth(view, fg.data(), 0, 1);
    CHECK(fg[0] == 0 && fg[1] == 1 && fg[5] == 1);
    const std::uint32_t labels[6] = {1, 1, 2, 2, 2, 7};
    std::vector<char> a(sizeof labels + 1);
    std::memcpy(a.data() + 1, labels, sizeof labels);
    const Contingency t = contingency_table<std::uint32_t, std::uint32_t>(a.data() + 1, a.data() + 1, {2, 3}, {12, 4},
                                                                          {12, 4}, false, false, 1);
    CHECK(t.truth_values.size() == 3 && t.counts.size() == 3 && t.counts[1] == 3);
}

// Random binary image (padded, as the warp pads) and a random processing order of a random subset
// of its pixels, for greedy_passes.
static void random_warp_input(std::mt19937& rng, index_t nz, index_t ny, index_t nx, WarpWorkspace& ws) {
    const index_t w2 = nx + 2, plane = (ny + 2) * w2;
    ws.padded.assign(static_cast<std::size_t>((nz + 2) * plane + 1), 0);
    ws.live.clear();
    const unsigned density = 30 + rng() % 40, listed = 20 + rng() % 70;
    for (index_t z = 0; z < nz; ++z)
        for (index_t y = 0; y < ny; ++y)
            for (index_t x = 0; x < nx; ++x) {
                const auto pos = static_cast<std::size_t>((z + (nz > 1 ? 1 : 0)) * plane + (y + 1) * w2 + x + 1);
                ws.padded[pos] = rng() % 100 < density ? 1 : 0;
                if (rng() % 100 < listed) ws.live.push_back(pos);
            }
    std::shuffle(ws.live.begin(), ws.live.end(), rng);
}

// The greedy passes walk the list, or, once walks get costly, visit only the dirty list positions
// (indexed passes). Both must give the same warp for any image and processing order; and a path grown
// one pixel per pass (a serpentine whose probabilities rise away from the truth's one seed pixel)
// must cost O(path), where walking every pass cost O(path^2).
static void test_greedy_passes() {
    {  // PositionSet (three levels at 5000 positions) against a plain array
        PositionSet set;
        set.reset(5000);
        std::vector<char> in(5000, 0);
        std::mt19937 rng(1);
        bool same = true;
        for (int step = 0; step < 4000 && same; ++step) {
            const std::size_t i = rng() % 5000;
            if (rng() % 3) set.insert(i), in[i] = 1; else set.erase(i), in[i] = 0;
            const std::size_t from = rng() % 5001;
            std::size_t expected = PositionSet::npos;
            for (std::size_t j = from; j < 5000 && expected == PositionSet::npos; ++j)
                if (in[j]) expected = j;
            same = set.next(from) == expected;
        }
        CHECK(same);
    }
    constexpr std::size_t kAlwaysWalk = std::size_t(1) << 32;
    std::mt19937 rng(7);
    int indexed_2d = 0, indexed_3d = 0;
    for (int trial = 0; trial < 300; ++trial) {  // 2D: walks against indexed passes from the second pass on
        const index_t ny = 2 + rng() % 30, nx = 2 + rng() % 30, w2 = nx + 2;
        WarpWorkspace walked, indexed;
        random_warp_input(rng, 1, ny, nx, walked);
        indexed.padded = walked.padded, indexed.live = walked.live;
        const index_t rows[3] = {-w2, 0, w2};
        greedy_passes(walked.live, walked.padded.data(), rows, SimpleTest2D{w2}, walked.relax, kAlwaysWalk);
        greedy_passes(indexed.live, indexed.padded.data(), rows, SimpleTest2D{w2}, indexed.relax, 0);
        bool same = walked.live == indexed.live && walked.relax.stats.flips == indexed.relax.stats.flips;
        for (std::size_t i = 0; i < walked.padded.size(); ++i) same = same && (walked.padded[i] & 1) == (indexed.padded[i] & 1);
        CHECK(same);
        indexed_2d += indexed.relax.stats.passes > 2;
    }
    for (int trial = 0; trial < 60; ++trial) {  // 3D alike
        const index_t nz = 2 + rng() % 8, ny = 2 + rng() % 8, nx = 2 + rng() % 8, w2 = nx + 2, plane = (ny + 2) * w2;
        WarpWorkspace walked, indexed;
        random_warp_input(rng, nz, ny, nx, walked);
        indexed.padded = walked.padded, indexed.live = walked.live;
        const index_t rows[9] = {-plane - w2, -plane, -plane + w2, -w2, 0, w2, plane - w2, plane, plane + w2};
        greedy_passes(walked.live, walked.padded.data(), rows, SimpleTest3D(w2, plane), walked.relax, kAlwaysWalk);
        greedy_passes(indexed.live, indexed.padded.data(), rows, SimpleTest3D(w2, plane), indexed.relax, 0);
        bool same = walked.live == indexed.live && walked.relax.stats.flips == indexed.relax.stats.flips;
        for (std::size_t i = 0; i < walked.padded.size(); ++i) same = same && (walked.padded[i] & 1) == (indexed.padded[i] & 1);
        CHECK(same);
        indexed_3d += indexed.relax.stats.passes > 2;
    }
    CHECK(indexed_2d > 100 && indexed_3d > 20);  // the indexed passes ran over several passes

    // the serpentine, 2D and 3D: rows y = 0, 2, ... joined at alternate ends (3D: plane serpentines
    // joined through the odd planes); truth = its first pixel, proposal rising along it
    for (const index_t nz : {1, 9}) {
        const index_t ny = 63, nx = 64;
        std::vector<index_t> path;  // row-major indices in path order
        for (index_t z = 0, plane_turn = 0; z < nz; z += 2, ++plane_turn) {
            std::vector<index_t> in_plane;
            for (index_t y = 0, turn = 0; y < ny; y += 2, ++turn) {
                if (y > 0) in_plane.push_back((y - 1) * nx + (turn % 2 ? nx - 1 : 0));
                for (index_t i = 0; i < nx; ++i) in_plane.push_back(y * nx + (turn % 2 ? nx - 1 - i : i));
            }
            if (plane_turn % 2) std::reverse(in_plane.begin(), in_plane.end());
            if (z > 0) path.push_back((z - 1) * ny * nx + in_plane.front());
            for (const index_t p : in_plane) path.push_back(z * ny * nx + p);
        }
        const auto n = static_cast<index_t>(path.size());
        std::vector<std::uint8_t> truth(static_cast<std::size_t>(nz * ny * nx), 0), warped(truth.size());
        std::vector<float> proposal(truth.size(), 0.0f);
        for (index_t k = 0; k < n; ++k) proposal[path[k]] = 0.5f + 0.5f * static_cast<float>(k + 1) / static_cast<float>(n);
        truth[path[0]] = 1, proposal[path[0]] = 1.0f;
        const View3D<float> view{reinterpret_cast<const char*>(proposal.data()), nz, ny, nx,
                                 static_cast<index_t>(ny * nx * sizeof(float)), static_cast<index_t>(nx * sizeof(float)), sizeof(float)};
        WarpWorkspace ws;
        std::size_t left;
        if (nz == 1) {
            std::vector<std::uint32_t> survivors;
            warp_slice_2d(truth.data(), view, 0, nullptr, 0.5, ws, warped.data(), survivors);
            left = survivors.size();
        } else {
            std::vector<std::uint64_t> survivors;
            warp_volume_3d(truth.data(), view, nullptr, 0.5, ws, warped.data(), survivors);
            left = survivors.size();
        }
        bool grown = left == 0;
        for (const index_t p : path) grown = grown && warped[p] == 1;
        CHECK(grown);
        const RelaxStats& st = ws.relax.stats;
        const auto list = static_cast<std::size_t>(n - 1);
        CHECK(st.flips == list && st.passes + 1 >= list);  // one flip per pass: the adversarial case
        CHECK(st.visits <= (kWalkBudget + 1) * (list + st.flips));  // not list * passes
        CHECK(st.tests <= list + 26 * st.flips);
    }
}

// The watershed: a hand-computed line, and on random images (2D and 3D, face and full connectivity)
// no two neighbours carry different labels once lines are drawn, and every seed keeps its label.
static void test_seeded_watershed() {
    const float row[5] = {0.9f, 0.8f, 0.7f, 0.75f, 0.95f};
    float priority[5];
    for (int i = 0; i < 5; ++i) priority[i] = -row[i];  // higher probability floods first
    std::uint32_t labels[5] = {1, 0, 0, 0, 2};
    seeded_flood(priority, nullptr, labels, 1, 1, 5, false, true);
    const std::uint32_t expected[5] = {1, 1, 0, 2, 2};
    for (int i = 0; i < 5; ++i) CHECK(labels[i] == expected[i]);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    for (int trial = 0; trial < 40; ++trial) {
        const index_t nz = trial % 2 ? 3 : 1, ny = 5 + trial % 7, nx = 4 + trial % 5;
        const bool full = trial % 4 >= 2;
        const auto n = static_cast<std::size_t>(nz * ny * nx);
        std::vector<float> p(n);
        std::vector<std::uint32_t> lab(n, 0), seeds;
        for (auto& v : p) v = -uniform(rng);
        for (std::size_t i = 0; i < n; i += 7) lab[i] = static_cast<std::uint32_t>(i + 1);  // isolated seeds
        seeds = lab;
        const auto steps = neighbour_steps(nz > 1, full);
        bool seeds_touch = false;
        for (std::size_t i = 0; i < n; ++i) {
            const index_t x = static_cast<index_t>(i) % nx, y = (static_cast<index_t>(i) / nx) % ny, z = static_cast<index_t>(i) / (nx * ny);
            for (const auto& s : steps) {
                const index_t zz = z + s[0], yy = y + s[1], xx = x + s[2];
                if (zz < 0 || zz >= nz || yy < 0 || yy >= ny || xx < 0 || xx >= nx) continue;
                const auto j = static_cast<std::size_t>((zz * ny + yy) * nx + xx);
                seeds_touch |= seeds[i] && seeds[j];
            }
        }
        if (seeds_touch) continue;  // the rule needs seeds of different labels apart
        seeded_flood(p.data(), nullptr, lab.data(), nz, ny, nx, full, true);
        for (std::size_t i = 0; i < n; ++i) {
            if (seeds[i]) CHECK(lab[i] == seeds[i]);
            const index_t x = static_cast<index_t>(i) % nx, y = (static_cast<index_t>(i) / nx) % ny, z = static_cast<index_t>(i) / (nx * ny);
            for (const auto& s : steps) {
                const index_t zz = z + s[0], yy = y + s[1], xx = x + s[2];
                if (zz < 0 || zz >= nz || yy < 0 || yy >= ny || xx < 0 || xx >= nx) continue;
                const auto j = static_cast<std::size_t>((zz * ny + yy) * nx + xx);
                CHECK(!(lab[i] && lab[j] && lab[i] != lab[j]));
            }
        }
    }
}

int main() {
    test_simple_points_2d();
    test_simple_points_3d();
    test_components();
    test_warping_merger();
    test_contingency();
    test_contingency_wide_labels();
    test_classification_from_truth_labels();
    test_parallel_for();
    test_thread_start_failure();
    test_resolve_threads();
    test_unaligned_reads();
    test_greedy_passes();
    test_seeded_watershed();
    if (failures) {
        std::printf("%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("all core checks passed\n");
    return 0;
}
