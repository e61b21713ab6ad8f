"""Prediction past one machine: chunked, exact, resumable inference on Dask (needs the ``dask`` extra).

* :func:`predict_dask` — a lazy Dask array of labels or probabilities of any array (Dask, zarr, OME-Zarr
  level, memmap, numpy), equal bit for bit to ``Segmenter.predict`` of the whole array.

The block plan is the single-machine tile plan cut along tile borders (:mod:`.blocks`), so exactness
does not depend on the network: blocks run the very tiles the single-machine prediction runs, with the
whole image's normalisation statistics.
"""
from .graph import predict_dask

__all__ = ["predict_dask"]
