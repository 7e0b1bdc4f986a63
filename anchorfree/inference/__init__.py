"""Running a trained detector: loading checkpoints (:mod:`.checkpoint`), predicting and scoring datasets
(:mod:`.evaluate`), predicting images into a folder (:mod:`.folder`). Below the training engine; used by the
API, the command line, exports, converters, reports and the server."""
