"""Built-in datasets, registered through the same hook as any third-party dataset."""

from __future__ import annotations

from ganarch.data.digits import load_digits
from ganarch.data.files import load_cifar10, load_folder, load_mnist
from ganarch.data.shapes import load_shapes
from ganarch.plugin import hookimpl


@hookimpl
def ganarch_register_datasets(registrar) -> None:
    registrar.add("digits", loader=load_digits)
    registrar.add("shapes", loader=load_shapes, takes_arg=True)
    registrar.add("folder", loader=load_folder, takes_arg=True)
    registrar.add("mnist", loader=load_mnist, takes_arg=True)
    registrar.add("cifar10", loader=load_cifar10, takes_arg=True)
