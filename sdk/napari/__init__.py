"""The napari plugin of unet-sdk (npe2 manifest: ``napari.yaml``; install with ``pip install "unet-sdk[napari]"``).

Widgets: **Segment** (a U-Net on an image layer, in a worker thread, cancellable between tiles),
**Evaluate** (ISBI 2012 scores of a proposal against a truth layer, with the warping error's
topological errors as a labels layer, markers to jump between them and the per-object VI); a reader for
unet-sdk outputs, a labels writer and the embedded ISBI 2012 sample slice.

Only this package imports napari and Qt, and only its widget modules do: :mod:`.error_clusters`,
:mod:`.object_vi` and :mod:`.prediction` are plain numpy over :mod:`sdk` and usable without napari.
"""
