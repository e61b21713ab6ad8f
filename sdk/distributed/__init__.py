"""Prediction past one machine: chunked, exact, resumable inference on Dask (needs the ``dask`` extra).

* :func:`predict_dask` — a lazy Dask array of labels or probabilities of any array (Dask, zarr, OME-Zarr
  level, memmap, numpy), equal bit for bit to ``Segmenter.predict`` of the whole array.
* :func:`predict_to_zarr` — the same written into an OME-Zarr by the workers, chunk by chunk; a rerun
  resumes an interrupted run, failing chunks are reported (:class:`PredictionIncompleteError`).
* :func:`predict_files` — many files, one task per file, resumable.

The block plan is the single-machine tile plan cut along tile borders (:mod:`.blocks`), so exactness
does not depend on the network: blocks run the very tiles the single-machine prediction runs, with the
whole image's normalisation statistics.
"""
from .files import predict_files
from .graph import predict_dask
from .zarr_output import PredictionIncompleteError, WriteReport, predict_to_zarr

__all__ = ["PredictionIncompleteError", "WriteReport", "predict_dask", "predict_files", "predict_to_zarr"]
