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
    means plus ``per_class``: ``{metric: {class name: value}}``, in percent
    rounded to 2 decimals exactly as the printed table shows them (NaN for
    classes absent from both prediction and ground truth). The runner passes
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
        areas = [sum(area) for area in zip(*results)]
        per_class = self.total_area_to_metrics(*areas, self.metrics,
                                               self.nan_to_num, self.beta)
        per_class.pop('aAcc', None)
        classes = self.dataset_meta['classes']
        metrics['per_class'] = {
            name: dict(zip(classes, np.round(values * 100, 2).tolist()))
            for name, values in per_class.items()
        }
        return metrics
