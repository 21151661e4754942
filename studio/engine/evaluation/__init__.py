"""Quality evaluation: objective metrics, copy-synthesis runs and their reports.

- ``metrics``: PESQ-wb, STOI, mel-cepstral distortion, DNSMOS, log-spectral and multi-resolution STFT
  distances. PESQ, STOI, MCD and DNSMOS need the optional ``eval`` extra (``pip install -e .[eval]``);
  the two spectral distances are plain numpy.
- ``dnsmos``: Microsoft's DNSMOS P.835 network (the ONNX file shipped by PyPI ``speechmos``), run with
  onnxruntime.
- ``copysynth``: resynthesise held-out speech from its mel with a model and with Griffin-Lim, and score
  both against the original.
- ``report``: the per-system table and JSON.

Nothing here imports Qt; everything runs in the caller's thread.
"""
