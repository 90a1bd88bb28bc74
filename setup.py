"""deeplabplus-mm: DeepLab v3+ with a TensorFlow-faithful aligned Xception for
mmsegmentation 1.x."""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join('deeplabplus_mm', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='deeplabplus-mm',
    version=read_version(),
    description='DeepLab v3+ with a TensorFlow-faithful aligned Xception, '
    'a TF checkpoint converter and VOC-aug / COCO-VOC datasets for '
    'mmsegmentation 1.x',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.8',
    packages=find_packages(include=['deeplabplus_mm', 'deeplabplus_mm.*']),
    # OpenMMLab's tools (mim, mmengine's inferencers) look for the model
    # index, configs and tools in <package>/.mim: links to the repository's
    # folders in a checkout, copies in a wheel.
    package_data={'deeplabplus_mm': ['.mim/model-index.yml',
                                     '.mim/configs/**/*',
                                     '.mim/tools/**/*']},
    # Loose on purpose: torch and mmcv must match the user's CUDA, so they
    # are installed first (README, "Manual install"); `make` pins the rest.
    install_requires=[
        'torch>=2.0',
        'mmcv>=2.0.0rc4,<2.2.0',
        'mmengine>=0.10.0,<1.0.0',
        'mmsegmentation>=1.2.0,<1.3.0',
        'numpy',
        'opencv-python-headless',
        'pycocotools',
        'scipy',
    ],
    extras_require={
        'tests': ['pytest'],
        # ONNX export and ONNX Runtime inference (requirements/onnx.txt)
        'onnx': ['onnx', 'onnxscript', 'onnxruntime'],
    },
    zip_safe=False,
)
