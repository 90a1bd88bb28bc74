from .per_class_iou_metric import PerClassIoUMetric
from .voc_submission_writer import (VOCSubmissionWriter,
                                    add_voc_submission_writer)

__all__ = [
    'PerClassIoUMetric', 'VOCSubmissionWriter', 'add_voc_submission_writer'
]
