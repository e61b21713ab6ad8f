// Strided, typed, read-only views of caller-owned arrays (e.g. numpy buffers in any memory layout).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace unetsdk {

using index_t = std::int64_t;

// A value of type T at p, which need not be aligned for T (an array may start at any byte offset in
// its buffer): memcpy is defined there, and compiles to one plain load.
template <class T>
inline T load_unaligned(const char* p) {
    T value;
    std::memcpy(&value, p, sizeof(T));
    return value;
}

// A (Z, Y, X) view with byte strides: C-, F-ordered and non-contiguous arrays are read in place.
template <class T>
struct View3D {
    const char* data = nullptr;
    index_t nz = 0, ny = 0, nx = 0;
    index_t sz = 0, sy = 0, sx = 0;  // strides in bytes

    T operator()(index_t z, index_t y, index_t x) const {
        return load_unaligned<T>(data + z * sz + y * sy + x * sx);
    }
    const char* row(index_t z, index_t y) const { return data + z * sz + y * sy; }
    T at_row(const char* r, index_t x) const { return load_unaligned<T>(r + x * sx); }
    index_t size() const { return nz * ny * nx; }
};

// Foreground of a ground-truth view (value > 0) written to a contiguous uint8 (Z, Y, X) buffer.
template <class T>
void binarize_truth(const View3D<T>& v, std::uint8_t* out, index_t z0, index_t z1) {
    for (index_t z = z0; z < z1; ++z)
        for (index_t y = 0; y < v.ny; ++y) {
            const char* r = v.row(z, y);
            std::uint8_t* o = out + (z * v.ny + y) * v.nx;
            for (index_t x = 0; x < v.nx; ++x) o[x] = v.at_row(r, x) > T(0) ? 1 : 0;
        }
}

}  // namespace unetsdk
