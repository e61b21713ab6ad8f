// Seeded watershed: the priority flood of Beucher & Meyer (1993), with optional one-pixel watershed lines.
//
// Seeds (labels > 0) flood the pixels of a mask in order of increasing priority; ties go to the pixel
// reached first. The heap is keyed by (priority, age, index): seeds enter with age 0 in raster order, every
// later pixel with the next age. Neighbours are visited in raster order of their offsets.
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
#include <functional>
#include <queue>
#include <vector>

#include "views.hpp"

namespace unetsdk {

struct FloodEntry {
    double priority;
    std::uint64_t age;
    std::int64_t index;
    bool operator>(const FloodEntry& o) const {
        if (priority != o.priority) return priority > o.priority;
        if (age != o.age) return age > o.age;
        return index > o.index;
    }
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

// Floods `labels` (nz * ny * nx, C order; seeds > 0, everything else 0) in place. `priority` is read as
// double; `mask` (nullable) limits the flood, pixels outside it or out of reach stay 0.
template <class P>
void seeded_flood(const P* priority, const std::uint8_t* mask, std::uint32_t* labels, index_t nz, index_t ny,
                  index_t nx, bool full, bool lines) {
    const auto steps = neighbour_steps(nz > 1, full);
    const std::int64_t n = nz * ny * nx;
    enum : std::uint8_t { untouched = 0, queued = 1, done = 2 };
    std::vector<std::uint8_t> state(static_cast<std::size_t>(n), untouched);
    std::priority_queue<FloodEntry, std::vector<FloodEntry>, std::greater<FloodEntry>> heap;
    for (std::int64_t i = 0; i < n; ++i)
        if (labels[i]) {
            heap.push({static_cast<double>(priority[i]), 0, i});
            state[static_cast<std::size_t>(i)] = queued;
        }
    // calls fn(j) for each in-bounds neighbour j of pixel i, in the order of `steps`
    const auto for_neighbours = [&](std::int64_t i, auto&& fn) {
        const index_t x = i % nx, y = (i / nx) % ny, z = i / (nx * ny);
        for (const auto& s : steps) {
            const index_t zz = z + s[0], yy = y + s[1], xx = x + s[2];
            if (zz < 0 || zz >= nz || yy < 0 || yy >= ny || xx < 0 || xx >= nx) continue;
            fn((zz * ny + yy) * nx + xx);
        }
    };
    std::uint64_t age = 0;
    while (!heap.empty()) {
        const std::int64_t i = heap.top().index;
        heap.pop();
        auto& st = state[static_cast<std::size_t>(i)];
        if (st == done) continue;
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
            auto& sj = state[static_cast<std::size_t>(j)];
            if (sj != untouched || (mask && !mask[j])) return;
            sj = queued;
            if (!lines) labels[j] = labels[i];
            heap.push({static_cast<double>(priority[j]), ++age, j});
        });
    }
}

}  // namespace unetsdk
