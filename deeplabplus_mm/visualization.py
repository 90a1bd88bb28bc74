"""Pictures people look at: overlays, prediction grids and
training curves (numpy + OpenCV + matplotlib; no display needed)."""
import json
import os
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

# The palette table (void colour at 255) and the palette-PNG writer
# (``save_palette_png``) live with VOC's facts.
from .datasets.voc_meta import palette_array



def colorize(label: np.ndarray, palette) -> np.ndarray:
    """Label map -> RGB image."""
    return palette_array(palette)[label.astype(np.uint8)]


def overlay(image_bgr: np.ndarray, label: np.ndarray, palette,
            alpha: float = 0.5) -> np.ndarray:
    """Blend the class colours over a BGR image (BGR out)."""
    color = colorize(label, palette)[..., ::-1].astype(np.float32)
    out = image_bgr.astype(np.float32) * (1 - alpha) + color * alpha
    return np.clip(out, 0, 255).astype(np.uint8)


def write_image(path: str, image: np.ndarray, **params) -> None:
    """cv2.imwrite to a temp file in the same folder, then rename."""
    root, ext = os.path.splitext(path)
    tmp = f'{root}.tmp{ext}'
    if not cv2.imwrite(tmp, image, [int(k) for kv in params.items()
                                    for k in kv] if params else []):
        raise OSError(f'could not write {path}')
    os.replace(tmp, path)


def save_grid(path: str, rows: List[Sequence[np.ndarray]], palette,
              titles: Sequence[str] = ('image', 'ground truth',
                                       'prediction'),
              cell: int = 160) -> None:
    """A PNG grid, one row per sample: (BGR image, GT label, predicted
    label), each scaled to ``cell`` pixels high, with column titles."""
    cells = []
    for image, gt, pred in rows:
        h, w = image.shape[:2]
        size = (max(1, round(w * cell / h)), cell)
        parts = [cv2.resize(image, size, interpolation=cv2.INTER_AREA)]
        for label in (gt, pred):
            parts.append(
                cv2.resize(colorize(label, palette)[..., ::-1], size,
                           interpolation=cv2.INTER_NEAREST))
        cells.append(parts)
    width = max(p.shape[1] for r in cells for p in r) + 4
    header = np.full((24, width * 3, 3), 255, np.uint8)
    for i, title in enumerate(titles):
        cv2.putText(header, title, (i * width + 4, 17),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    lines = [header]
    for parts in cells:
        line = np.full((cell + 4, width * 3, 3), 255, np.uint8)
        for i, p in enumerate(parts):
            line[2:2 + p.shape[0], i * width + 2:i * width + 2 + p.shape[1]] = p
        lines.append(line)
    write_image(path, np.concatenate(lines))


def read_scalars(path: str) -> Dict[str, List[tuple]]:
    """mmengine's LocalVisBackend ``scalars.json`` -> {name: [(step, v)]}."""
    series: Dict[str, List[tuple]] = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            step = record.pop('step', None)
            for key, value in record.items():
                if isinstance(value, (int, float)):
                    series.setdefault(key, []).append((step, value))
    return series


def plot_training_curves(scalars_json: str, out_png: str,
                         title: Optional[str] = None) -> Dict[str, list]:
    """Training loss and validation mIoU over iterations, as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    series = read_scalars(scalars_json)
    fig, ax_loss = plt.subplots(figsize=(7, 4), dpi=100)
    if 'loss' in series:
        steps, values = zip(*series['loss'])
        ax_loss.plot(steps, values, color='tab:blue', label='train loss')
    ax_loss.set_xlabel('iteration')
    ax_loss.set_ylabel('training loss', color='tab:blue')
    if 'mIoU' in series:
        ax_miou = ax_loss.twinx()
        steps, values = zip(*series['mIoU'])
        ax_miou.plot(steps, values, 'o-', color='tab:red', label='val mIoU')
        ax_miou.set_ylabel('validation mIoU (%)', color='tab:red')
        ax_miou.set_ylim(0, 100)
    ax_loss.set_title(title or 'training loss and validation mIoU')
    ax_loss.grid(alpha=0.3)
    fig.tight_layout()
    root, ext = os.path.splitext(out_png)
    tmp = f'{root}.tmp{ext}'
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out_png)
    return series
