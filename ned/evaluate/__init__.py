"""``ned evaluate``: measure an edited video against its input, the way a reviewer would.

Models independent of the editing tracker (dlib detector, 68 landmarks and face
embeddings; the FER2013 classifier) measure speech (mouth aperture), identity, emotion,
background fidelity and temporal stability; the containers are compared too. Results
go to JSON, a self-contained HTML report and a PNG summary (:mod:`ned.evaluate.report`).

Modules: :mod:`~ned.evaluate.models` (model files and wrappers), :mod:`~ned.evaluate.metrics`
(pure functions), :mod:`~ned.evaluate.container` (streams and audio),
:mod:`~ned.evaluate.evaluate` (the streaming pass), :mod:`~ned.evaluate.report` (outputs).
"""

from ned.evaluate.evaluate import EvaluateOptions, EvaluationResult, evaluate_videos
from ned.evaluate.models import EMOTION_TO_FER, FER_LABELS, fer_label

__all__ = ["EvaluateOptions", "EvaluationResult", "evaluate_videos", "EMOTION_TO_FER", "FER_LABELS", "fer_label"]
