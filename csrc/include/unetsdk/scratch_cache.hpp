// Scratch objects (workspaces with large buffers) kept between calls. Repeated calls on small images
// (a loop over slices, threads scoring the items of a data set) then reuse memory that is mapped and
// warm, instead of faulting fresh pages in every time: 8 % of a 512x512 ISBI sweep on one core, 18 %
// from Python. What stays allocated is bounded: only objects sized for images of up to
// kMaxCachedPixels are kept, at most one per hardware thread and type.
#pragma once

#include <algorithm>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "views.hpp"

namespace unetsdk {

namespace detail {
// The clear() of every ScratchCache type instantiated so far, for release_scratch_memory().
struct ScratchRegistry {
    std::mutex mutex;
    std::vector<void (*)()> clear;
    static ScratchRegistry& instance() {
        static ScratchRegistry registry;
        return registry;
    }
};
}  // namespace detail

// Frees every object kept by the scratch caches (callers running now keep theirs until they finish).
inline void release_scratch_memory() {
    detail::ScratchRegistry& r = detail::ScratchRegistry::instance();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (const auto clear : r.clear) clear();
}

template <class T>
class ScratchCache {
public:
    static constexpr index_t kMaxCachedPixels = index_t(1) << 20;  // 1024 x 1024

    // A T from the cache, or a new one.
    static std::unique_ptr<T> take() {
        ScratchCache& c = instance();
        {
            std::lock_guard<std::mutex> lock(c.mutex_);
            if (!c.free_.empty()) {
                std::unique_ptr<T> object = std::move(c.free_.back());
                c.free_.pop_back();
                return object;
            }
        }
        return std::make_unique<T>();
    }

    // Keeps object for later calls if it served an image of at most kMaxCachedPixels pixels and the
    // cache has room; frees it otherwise.
    static void give_back(std::unique_ptr<T> object, index_t pixels) {
        if (pixels > kMaxCachedPixels) return;
        ScratchCache& c = instance();
        std::lock_guard<std::mutex> lock(c.mutex_);
        if (c.free_.size() < c.capacity_) c.free_.push_back(std::move(object));
    }

    // Frees the objects kept.
    static void clear() {
        std::vector<std::unique_ptr<T>> kept;
        ScratchCache& c = instance();
        {
            std::lock_guard<std::mutex> lock(c.mutex_);
            kept.swap(c.free_);
        }
    }

    // Sum of measure(object) over the objects kept.
    template <class Measure>
    static std::size_t total(Measure&& measure) {
        ScratchCache& c = instance();
        std::lock_guard<std::mutex> lock(c.mutex_);
        std::size_t sum = 0;
        for (const auto& object : c.free_) sum += measure(*object);
        return sum;
    }

private:
    ScratchCache() : capacity_(std::max(2u, std::thread::hardware_concurrency())) {
        detail::ScratchRegistry& r = detail::ScratchRegistry::instance();
        std::lock_guard<std::mutex> lock(r.mutex);
        r.clear.push_back(&ScratchCache::clear);
    }
    static ScratchCache& instance() {
        static ScratchCache cache;
        return cache;
    }
    std::mutex mutex_;
    std::vector<std::unique_ptr<T>> free_;
    std::size_t capacity_;
};

// A T taken from ScratchCache<T> for the lifetime of this holder, given back for images of `pixels`.
template <class T>
class Scratch {
public:
    explicit Scratch(index_t pixels) : object_(ScratchCache<T>::take()), pixels_(pixels) {}
    Scratch(Scratch&&) noexcept = default;
    Scratch& operator=(Scratch&&) noexcept = default;
    ~Scratch() {
        if (object_) ScratchCache<T>::give_back(std::move(object_), pixels_);
    }
    T& operator*() const { return *object_; }
    T* operator->() const { return object_.get(); }
    T* get() const { return object_.get(); }

private:
    std::unique_ptr<T> object_;
    index_t pixels_;
};

}  // namespace unetsdk
