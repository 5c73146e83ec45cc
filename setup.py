"""Packages `pipeline` and `components`: installed locally (pip install -e .) and
shipped to remote Beam workers with `--setup_file=./setup.py`."""
import setuptools

setuptools.setup(
    name='pet-segmentation-pipeline',
    version='0.1.0',
    description='TFX pipeline: U-Net segmentation of Oxford-IIIT Pet images',
    packages=setuptools.find_packages(include=['pipeline', 'pipeline.*',
                                               'components', 'components.*']),
    package_data={'': ['*.pbtxt']},
    python_requires='>=3.9,<3.11',
    # Workers get the same TFX stack from their image or requirements; only the
    # small extras this code imports directly are listed here.
    install_requires=['pillow'],
)
