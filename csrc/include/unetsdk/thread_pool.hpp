// A minimal fork-join pool: run `count` independent tasks on up to `threads` std::threads.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace unetsdk {

// Calls fn(task, worker) for task in [0, count), dynamically scheduled; worker in [0, workers) lets
// callers keep one scratch workspace per thread. The first exception thrown by a task is rethrown.
// If the system refuses to start a thread (too many threads, no memory for a stack), the tasks run on
// the threads that did start, the calling thread among them: the result is the same, only slower.
template <class Fn>
void parallel_for(std::size_t count, unsigned threads, Fn&& fn) {
    if (count == 0) return;
    const unsigned workers =
        static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>(threads ? threads : 1, count)));
    if (workers == 1) {
        for (std::size_t t = 0; t < count; ++t) fn(t, 0u);
        return;
    }
    std::atomic<std::size_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto run = [&](unsigned worker) {
        for (;;) {
            const std::size_t t = next.fetch_add(1);
            if (t >= count) return;
            try {
                fn(t, worker);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
                next.store(count);
            }
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(workers - 1);
    try {
        for (unsigned w = 1; w < workers; ++w) pool.emplace_back(run, w);
    } catch (...) {  // std::system_error or std::bad_alloc: no more threads; dynamic scheduling needs none
    }
    run(0);
    for (auto& th : pool) th.join();
    if (error) std::rethrow_exception(error);
}

// Calls fn(group, item, worker) for every item < items of every group < groups. A worker takes a whole
// group and runs its items in order, so that the group's data stay in that core's caches; once no group
// is left, it helps with the groups still running, item by item, so that the last groups do not leave
// workers idle. Exceptions as in parallel_for.
template <class Fn>
void parallel_for_groups(std::size_t groups, std::size_t items, unsigned threads, Fn&& fn) {
    if (groups == 0 || items == 0) return;
    std::unique_ptr<std::atomic<std::size_t>[]> next_item(new std::atomic<std::size_t>[groups]);
    for (std::size_t g = 0; g < groups; ++g) next_item[g].store(0);
    std::atomic<std::size_t> next_group{0};
    const auto drain = [&](std::size_t g, unsigned worker) {
        for (std::size_t i; (i = next_item[g].fetch_add(1)) < items;) fn(g, i, worker);
    };
    const auto workers = static_cast<unsigned>(std::max<std::size_t>(1, std::min<std::size_t>(threads ? threads : 1, groups * items)));
    parallel_for(workers, workers, [&](std::size_t, unsigned worker) {
        for (std::size_t g; (g = next_group.fetch_add(1)) < groups;) drain(g, worker);
        for (std::size_t g = 0; g < groups; ++g) drain(g, worker);
    });
}

// Most threads started per hardware thread: more cannot run at once, and each costs a stack and, in
// most callers, a workspace.
constexpr unsigned kMaxThreadsPerCore = 2;

inline unsigned hardware_threads() {
    const unsigned hw = std::thread::hardware_concurrency();
    return hw ? hw : 1;
}

// Number of workers to use for `requested` threads (0 = all hardware threads), at most
// kMaxThreadsPerCore per hardware thread.
inline unsigned resolve_threads(unsigned requested) {
    const unsigned hw = hardware_threads();
    if (requested == 0) return hw;
    return static_cast<unsigned>(std::min<unsigned long long>(requested, 1ULL * kMaxThreadsPerCore * hw));
}

}  // namespace unetsdk
