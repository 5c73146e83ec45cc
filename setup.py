"""Packages `pipeline` and `components`: installed locally (pip install -e .) and
shipped to remote Beam workers with `--setup_file=./setup.py`."""
import setuptools

setuptools.setup(
    name='pet-segmentation-pipeline',
    version='0.1.0',
    description='TFX pipeline: U-Net segmentation of Oxford-IIIT Pet images',
    packages=setuptools.find_packages(include=['pipeline', 'pipeline.*',
                                               'components', 'components.*']),
    # The model card's Jinja2 templates (pipeline/tools/model_card.py).
    package_data={'': ['*.pbtxt'], 'pipeline.tools': ['templates/*.j2']},
    python_requires='>=3.9,<3.11',
    # Workers get the same TFX stack from their image or requirements; only the
    # small extras this code imports directly are listed here (matplotlib: the
    # report's charts, pipeline/tools/plots.py).
    install_requires=['pillow', 'matplotlib', 'jinja2'],
)
