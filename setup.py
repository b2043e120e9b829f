"""ament_python package that also installs with plain `pip install -e .` outside ROS."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ivif_fusion"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/models", glob("models/*.pt") + glob("models/*.md") + glob("models/*.json")),
        (f"share/{PACKAGE}/models/onnx", glob("models/onnx/*.onnx") + glob("models/onnx/*.json")),
        (f"share/{PACKAGE}/msg", glob("msg/*.msg")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="ivif_fusion developers",
    maintainer_email="ivif-fusion@example.org",
    description="Task-customized visible-infrared image fusion for ROS 2 (RSC, VIFA), ONNX Runtime and TensorRT.",
    license="MIT",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "ivif = ivif_fusion.cli:main",
            "fusion_node = ivif_fusion.ros.fusion_node:main",
            "fusion_lifecycle_node = ivif_fusion.ros.lifecycle_node:main",
        ],
    },
)
