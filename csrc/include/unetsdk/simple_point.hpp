// Simple points: pixels/voxels whose flip does not change the topology of a binary image.
//
// 2D, foreground 4-connected / background 8-connected: a pixel is simple iff, in its 3x3 neighbourhood
// (centre excluded), the foreground has exactly one 4-component 4-adjacent to the centre and the
// background exactly one 8-component (Rosenfeld; the rule Fiji's WarpingError uses). Decided by a
// 256-entry table over the 8 neighbours.
//
// 3D, foreground 6-connected / background 26-connected: x is simple iff T6(x, X) = 1 and
// T26(x, X') = 1 (Bertrand & Malandain, Pattern Recogn. Lett. 15:169-175, 1994), where T6 counts the
// 6-components of X in the 18-neighbourhood that are 6-adjacent to x (the geodesic neighbourhood
// N6^2) and T26 the 26-components of the background in the 26-neighbourhood.
#pragma once

#include <array>
#include <cstdint>
#include <cstdlib>

namespace unetsdk {
namespace topology {

// Offsets (dy, dx) of the 8 neighbours; bit i of a 2D neighbourhood code is neighbour i.
constexpr int kOffsets2D[8][2] = {{-1, -1}, {-1, 0}, {-1, 1}, {0, -1}, {0, 1}, {1, -1}, {1, 0}, {1, 1}};

namespace detail {

// Number of components of the neighbours in `set` under `adjacent(i, j)`, counting only components
// that contain a neighbour in `seed_mask`. Neighbour sets are bitmasks over at most 26 positions.
template <int N, class Adjacent>
int count_components(std::uint32_t set, std::uint32_t seed_mask, Adjacent adjacent) {
    int components = 0;
    std::uint32_t left = set;
    while (left) {
        std::uint32_t comp = left & (~left + 1u);  // lowest remaining neighbour
        std::uint32_t frontier = comp;
        while (frontier) {
            std::uint32_t grown = 0;
            for (int i = 0; i < N; ++i)
                if (frontier >> i & 1u) grown |= adjacent(i);
            frontier = grown & left & ~comp;
            comp |= frontier;
        }
        left &= ~comp;
        if (comp & seed_mask) ++components;
    }
    return components;
}

struct Table2D {
    std::array<std::uint8_t, 256> simple{};
    Table2D() {
        std::uint32_t adj4[8] = {}, adj8[8] = {};
        std::uint32_t four_neighbours = 0;
        for (int i = 0; i < 8; ++i) {
            const int dy = kOffsets2D[i][0], dx = kOffsets2D[i][1];
            if (std::abs(dy) + std::abs(dx) == 1) four_neighbours |= 1u << i;
            for (int j = 0; j < 8; ++j) {
                if (i == j) continue;
                const int ey = std::abs(dy - kOffsets2D[j][0]), ex = std::abs(dx - kOffsets2D[j][1]);
                if (ey + ex == 1) adj4[i] |= 1u << j;
                if (ey <= 1 && ex <= 1) adj8[i] |= 1u << j;
            }
        }
        for (std::uint32_t code = 0; code < 256; ++code) {
            const int t4 = count_components<8>(code, four_neighbours, [&](int i) { return adj4[i]; });
            const int t8bar = count_components<8>(~code & 0xFFu, 0xFFu, [&](int i) { return adj8[i]; });
            simple[code] = (t4 == 1 && t8bar == 1) ? 1 : 0;
        }
    }
};

struct Adjacency3D {
    std::uint32_t adj6[26] = {}, adj26[26] = {};
    std::uint32_t faces = 0, n18 = 0;
    int offset[26][3] = {};
    Adjacency3D() {
        int k = 0;
        for (int dz = -1; dz <= 1; ++dz)
            for (int dy = -1; dy <= 1; ++dy)
                for (int dx = -1; dx <= 1; ++dx) {
                    if (!dz && !dy && !dx) continue;
                    offset[k][0] = dz, offset[k][1] = dy, offset[k][2] = dx;
                    const int l1 = std::abs(dz) + std::abs(dy) + std::abs(dx);
                    if (l1 == 1) faces |= 1u << k;
                    if (l1 <= 2) n18 |= 1u << k;
                    ++k;
                }
        for (int i = 0; i < 26; ++i)
            for (int j = 0; j < 26; ++j) {
                if (i == j) continue;
                const int a = std::abs(offset[i][0] - offset[j][0]), b = std::abs(offset[i][1] - offset[j][1]),
                          c = std::abs(offset[i][2] - offset[j][2]);
                if (a + b + c == 1) adj6[i] |= 1u << j;
                if (a <= 1 && b <= 1 && c <= 1) adj26[i] |= 1u << j;
            }
    }
};

}  // namespace detail

inline const std::array<std::uint8_t, 256>& simple_table_2d() {
    static const detail::Table2D table;
    return table.simple;
}

inline const detail::Adjacency3D& adjacency_3d() {
    static const detail::Adjacency3D adjacency;
    return adjacency;
}

// 3D neighbourhood code: bit k is the neighbour at adjacency_3d().offset[k] (dz, dy, dx in raster order).
inline bool is_simple_3d(std::uint32_t code) {
    const auto& a = adjacency_3d();
    const std::uint32_t all = (1u << 26) - 1u;
    const std::uint32_t fg = code & all, bg = ~code & all;
    if (!(fg & a.faces)) return false;  // T6 = 0 (isolated or no face neighbour)
    if (!bg) return false;              // T26 of the background = 0 (interior voxel)
    if (detail::count_components<26>(bg, all, [&](int i) { return a.adj26[i]; }) != 1) return false;
    return detail::count_components<26>(fg & a.n18, a.faces, [&](int i) { return a.adj6[i]; }) == 1;
}

}  // namespace topology
}  // namespace unetsdk
