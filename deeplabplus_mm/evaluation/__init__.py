from .voc_submission_writer import (VOCSubmissionWriter,
                                    add_voc_submission_writer)

__all__ = ['VOCSubmissionWriter', 'add_voc_submission_writer']
