"""Leaving Python: the fitted model as a portable file.

* :mod:`aelab.export.onnx`: the whole anomaly score (raw input -> scaler -> network -> the
  score and its fitted statistics) as one ONNX graph, int8 quantisation through ONNX
  Runtime with its cost measured, and ONNX Runtime as a scoring engine;
* :mod:`aelab.export.quantize`: fixed-point (``ap_fixed<W,I>``) emulation and the bit-width scan;
* :mod:`aelab.export.hls`: hls4ml projects for FPGAs.

Everything here reads a :class:`~aelab.fitted.Fitted` (or an estimator's ``fitted_``) and
never imports :mod:`aelab.estimators`. The optional packages (extras ``onnx`` and ``hls``)
are imported inside the functions that need them.
"""
