"""mmseg's IoUMetric whose per-class figures reach the runner's results."""
from typing import Dict, List

import numpy as np
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS


@METRICS.register_module()
class PerClassIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` that also returns its per-class table.

    mmseg's metric prints the per-class IoU / Acc (and Dice, Fscore, ...)
    table to the log and returns only the means. This one returns the same
    means plus ``per_class``: ``{metric: {class name: value}}`` (NaN for
    classes absent from both prediction and ground truth). All figures are
    the ones mmseg prints: percent rounded to 2 decimals (mmseg rounds in
    float32), as the nearest Python floats, so 64.01 is stored as 64.01 and
    not as float32's 64.01000213623047. The runner passes
    it on like any metric: ``Runner.test()`` returns it, and mmengine's
    ``LoggerHook`` writes it to ``<work_dir>/<timestamp>/<timestamp>.json``,
    where programs read it instead of parsing the log.

    Takes the arguments of mmseg's ``IoUMetric``.
    """

    def compute_metrics(self, results: List[tuple]) -> Dict:
        """The means of mmseg's ``IoUMetric`` and ``per_class``.

        Args:
            results: Per-image (intersection, union, prediction, label)
                areas from :meth:`process`.

        Returns:
            dict: ``aAcc``, ``mIoU``, ... as mmseg's metric returns them, and
            ``per_class`` (absent with ``format_only``).
        """
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        metrics = {key: _printed(value) for key, value in metrics.items()}
        areas = [sum(area) for area in zip(*results)]
        per_class = self.total_area_to_metrics(*areas, self.metrics,
                                               self.nan_to_num, self.beta)
        per_class.pop('aAcc', None)
        classes = self.dataset_meta['classes']
        metrics['per_class'] = {
            name: dict(zip(classes, map(_printed, np.round(values * 100, 2))))
            for name, values in per_class.items()
        }
        return metrics


def _printed(value) -> float:
    """A figure mmseg rounded to 2 decimals (in float32) as the nearest
    Python float to the decimal it prints."""
    return round(float(value), 2)
