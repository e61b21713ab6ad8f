// Range and finiteness of an image's values in one vectorisable pass: what validating a probability
// map needs (finite, inside [0, 1]).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
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
    // All values finite and within [0, 1] (a probability map).
    bool probabilities() const { return finite && lo >= 0.0 && hi <= 1.0; }
};

// Adds n contiguous values to s.
template <class T>
void summarise_values(const T* values, index_t n, ValueSummary& s) {
    T lo = std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max();
    T hi = std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::lowest();
    std::size_t nan = 0;
    for (index_t x = 0; x < n; ++x) {  // NaN-ignoring min/max and a NaN count: vectorises
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

// Summary of rows [row0, row1) (row = z * ny + y) of a view in any memory layout.
template <class T>
ValueSummary summarise_rows(const View3D<T>& v, index_t row0, index_t row1) {
    ValueSummary s;
    std::vector<T> copy(static_cast<std::size_t>(v.nx));
    for (index_t row = row0; row < row1; ++row) {
        const char* r = v.row(row / v.ny, row % v.ny);
        if (v.sx == static_cast<index_t>(sizeof(T)) && reinterpret_cast<std::uintptr_t>(r) % alignof(T) == 0) {
            summarise_values(reinterpret_cast<const T*>(r), v.nx, s);
        } else {
            for (index_t x = 0; x < v.nx; ++x) copy[static_cast<std::size_t>(x)] = v.at_row(r, x);
            summarise_values(copy.data(), v.nx, s);
        }
    }
    return s;
}

}  // namespace unetsdk
