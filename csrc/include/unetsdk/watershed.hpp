// Seeded watershed: the priority flood of Beucher & Meyer (1993), with optional one-pixel watershed lines.
//
// Seeds (labels > 0) flood the pixels of a mask in order of increasing priority; ties go to the pixel
// reached first. The heap is keyed by (priority, age): seeds enter first, in raster order, every later pixel
// with the next age (the order of scikit-image's heap, whose seeds share age 0 and tie by index).
// Neighbours are visited in raster order of their offsets.
//
// Without lines (scikit-image's `watershed(priority, markers, mask=mask)`): a pixel takes the label of the
// pixel that reached it, when it is pushed.
// With lines: a pixel is labelled when it is popped, from its labelled neighbours (seeds and pixels popped
// before it). If they carry
// two or more labels it becomes line (label 0) and floods no further. So no two neighbouring pixels carry
// different labels (for the connectivity used): regions touch only across a line, and components of
// `labels > 0` are the regions, one per seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <array>
#include <cstring>
#include <type_traits>
#include <functional>
#include <queue>
#include <vector>

#include "views.hpp"

namespace unetsdk {

// Flood order keys. The queue pops the least (priority, age); seeds enter first, with ages 0, 1, ... in
// raster order, so a key is unique and the pixel index is only its payload.
//
// float32 priorities with fewer than 2^32 pushes pack into one integer: the float's bits made
// order-preserving (-0 counts as +0, as the comparison of floats does) above a 32-bit age.
struct PackedKey {
    std::uint64_t bits;
    static PackedKey make(float priority, std::uint64_t age) {
        std::uint32_t u;
        const float p = priority == 0.0f ? 0.0f : priority;
        std::memcpy(&u, &p, sizeof u);
        u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
        return {(static_cast<std::uint64_t>(u) << 32) | age};
    }
    bool operator<(const PackedKey& o) const { return bits < o.bits; }
};

// Any other priority (float64) or flood size: the value and the age side by side.
struct WideKey {
    double priority;
    std::uint64_t age;
    template <class P>
    static WideKey make(P p, std::uint64_t age) { return {static_cast<double>(p), age}; }
    bool operator<(const WideKey& o) const { return priority < o.priority || (priority == o.priority && age < o.age); }
};

// A queued pixel: the flood pops the least key first.
template <class Key>
struct FloodEntry {
    Key key;
    std::int64_t index;
    bool operator>(const FloodEntry& o) const { return o.key < key; }
};

// Neighbour offsets (dz, dy, dx) of a pixel, in raster order: face (4 / 6) or full (8 / 26) connectivity;
// a 2D image is a volume with nz = 1.
inline std::vector<std::array<int, 3>> neighbour_steps(bool volumetric, bool full) {
    std::vector<std::array<int, 3>> steps;
    for (int dz = -1; dz <= 1; ++dz)
        for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) {
                const int moved = (dz != 0) + (dy != 0) + (dx != 0);
                if (moved == 0 || (!volumetric && dz != 0)) continue;
                if (full || moved == 1) steps.push_back({dz, dy, dx});
            }
    return steps;
}

namespace detail {

template <class Key, class P>
void seeded_flood_with(const P* priority, const std::uint8_t* mask, std::uint32_t* labels, index_t nz, index_t ny,
                       index_t nx, bool full, bool lines) {
    const auto steps = neighbour_steps(nz > 1, full);
    const std::int64_t n = nz * ny * nx;
    enum : std::uint8_t { untouched = 0, queued = 1, done = 2 };
    std::vector<std::uint8_t> state(static_cast<std::size_t>(n), untouched);
    std::priority_queue<FloodEntry<Key>, std::vector<FloodEntry<Key>>, std::greater<FloodEntry<Key>>> heap;
    std::uint64_t age = 0;
    // calls fn(j) for each in-bounds neighbour j of pixel i, in the order of `steps`
    const auto for_neighbours = [&](std::int64_t i, auto&& fn) {
        const index_t x = i % nx, y = (i / nx) % ny, z = i / (nx * ny);
        for (const auto& s : steps) {
            const index_t zz = z + s[0], yy = y + s[1], xx = x + s[2];
            if (zz < 0 || zz >= nz || yy < 0 || yy >= ny || xx < 0 || xx >= nx) continue;
            fn((zz * ny + yy) * nx + xx);
        }
    };
    const auto floodable = [&](std::int64_t j) {
        return state[static_cast<std::size_t>(j)] == untouched && (!mask || mask[j]);
    };
    for (std::int64_t i = 0; i < n; ++i)
        if (labels[i]) state[static_cast<std::size_t>(i)] = queued;
    // Only seeds with a floodable neighbour enter the heap. Popping any other seed would do nothing (a
    // seed is never a line, and its neighbours stay unfloodable), so the flood is the same: most pixels
    // of a probability map are interior seed pixels, and the heap shrinks by that much.
    for (std::int64_t i = 0; i < n; ++i) {
        if (!labels[i]) continue;
        bool edge = false;
        for_neighbours(i, [&](std::int64_t j) { edge = edge || floodable(j); });
        if (edge) heap.push({Key::make(priority[i], age++), i});
    }
    while (!heap.empty()) {
        const std::int64_t i = heap.top().index;  // each pixel enters the heap once
        heap.pop();
        auto& st = state[static_cast<std::size_t>(i)];
        if (lines && labels[i] == 0) {
            std::uint32_t found = 0;
            bool several = false;
            for_neighbours(i, [&](std::int64_t j) {
                const std::uint32_t l = labels[j];  // seeds, and pixels already popped
                if (l == 0) return;
                if (found == 0) found = l;
                else if (l != found) several = true;
            });
            st = done;
            if (several || found == 0) continue;  // a line floods no further
            labels[i] = found;
        }
        st = done;
        for_neighbours(i, [&](std::int64_t j) {
            if (!floodable(j)) return;
            state[static_cast<std::size_t>(j)] = queued;
            if (!lines) labels[j] = labels[i];
            heap.push({Key::make(priority[j], age++), j});
        });
    }
}

}  // namespace detail

// Floods `labels` (nz * ny * nx, C order; seeds > 0, everything else 0) in place, by increasing `priority`;
// `mask` (nullable) limits the flood, pixels outside it or out of reach stay 0.
template <class P>
void seeded_flood(const P* priority, const std::uint8_t* mask, std::uint32_t* labels, index_t nz, index_t ny,
                  index_t nx, bool full, bool lines) {
    // every pixel is pushed at most once, so the ages of n pixels fit in 32 bits when n does
    if constexpr (std::is_same_v<P, float>)
        if (nz * ny * nx < (index_t{1} << 32))
            return detail::seeded_flood_with<PackedKey>(priority, mask, labels, nz, ny, nx, full, lines);
    detail::seeded_flood_with<WideKey>(priority, mask, labels, nz, ny, nx, full, lines);
}

}  // namespace unetsdk
