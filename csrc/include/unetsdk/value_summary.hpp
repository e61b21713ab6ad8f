// Validating a probability map: whether all values lie in [0, 1] (NaN does not), in one vectorised
// pass, and, only to explain a failure, the range of the values and whether they are finite.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "views.hpp"

namespace unetsdk {

struct ValueSummary {
    double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();  // NaN-ignoring
    bool finite = true;

    ValueSummary& operator+=(const ValueSummary& o) {
        lo = std::min(lo, o.lo), hi = std::max(hi, o.hi), finite = finite && o.finite;
        return *this;
    }
};

// Adds n contiguous values to s.
template <class T>
void summarise_values(const T* values, index_t n, ValueSummary& s) {
    T lo = std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max();
    T hi = std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::lowest();
    std::size_t nan = 0;
    for (index_t x = 0; x < n; ++x) {  // NaN-ignoring min/max and a NaN count (explains a failed check)
        const T value = values[x];
        lo = value < lo ? value : lo;
        hi = value > hi ? value : hi;
        nan += value != value;
    }
    if (n == 0) return;
    ValueSummary part;
    part.lo = static_cast<double>(lo), part.hi = static_cast<double>(hi);
    part.finite = nan == 0 && std::isfinite(part.lo) && std::isfinite(part.hi);
    s += part;
}

// Whether all n values lie in [0, 1] (false for NaN): branch-free, in lanes as wide as T.
template <class T>
bool all_probabilities(const T* values, index_t n) {
    if constexpr (!std::is_floating_point_v<T>) {  // bool maps, 0 or 1
        return true;
    } else {
        using Lane = std::conditional_t<sizeof(T) == 8, std::int64_t, std::int32_t>;
        Lane outside = 0;
        for (index_t x = 0; x < n; ++x) outside |= (values[x] >= T(0)) & (values[x] <= T(1)) ? 0 : 1;
        return outside == 0;
    }
}

// Calls fn(values, n) for each of rows [row0, row1) (row = z * ny + y) of a view in any memory layout,
// with the row's values contiguous (in place, or copied).
template <class T, class Fn>
void for_each_row(const View3D<T>& v, index_t row0, index_t row1, Fn&& fn) {
    std::vector<T> copy(static_cast<std::size_t>(v.nx));
    for (index_t row = row0; row < row1; ++row) {
        const char* r = v.row(row / v.ny, row % v.ny);
        if (v.sx == static_cast<index_t>(sizeof(T)) && reinterpret_cast<std::uintptr_t>(r) % alignof(T) == 0) {
            fn(reinterpret_cast<const T*>(r), v.nx);
        } else {
            for (index_t x = 0; x < v.nx; ++x) copy[static_cast<std::size_t>(x)] = v.at_row(r, x);
            fn(static_cast<const T*>(copy.data()), v.nx);
        }
    }
}

// Summary of rows [row0, row1) (row = z * ny + y) of a view in any memory layout.
template <class T>
ValueSummary summarise_rows(const View3D<T>& v, index_t row0, index_t row1) {
    ValueSummary s;
    for_each_row(v, row0, row1, [&](const T* values, index_t n) { summarise_values(values, n, s); });
    return s;
}

// all_probabilities over rows [row0, row1).
template <class T>
bool rows_are_probabilities(const View3D<T>& v, index_t row0, index_t row1) {
    bool all = true;
    for_each_row(v, row0, row1, [&](const T* values, index_t n) { all = all && all_probabilities(values, n); });
    return all;
}

}  // namespace unetsdk
