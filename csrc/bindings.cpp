// pybind11 bindings of the header-only core (csrc/include/unetsdk). Python-facing checks live here only.
#include <pybind11/pybind11.h>

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    m.doc() = "unet-sdk C++ metrics core";
}
