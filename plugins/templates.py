"""The built-in templates, registered through the same hook as any third-party template."""

from __future__ import annotations

from ganarch.dcgan import (
    BOOL_CHOICES,
    CHOICE_KINDS,
    CLAIM_TOGGLES,
    DESCRIPTION,
    INT_CHOICES,
    OPTIONAL_CHOICES,
    PAPER_CHOICES,
    PARAM_OWNERS,
    REQUIRES,
    dcgan_spec,
)
from ganarch.plugin import hookimpl


@hookimpl
def ganarch_register_templates(registrar) -> None:
    registrar.add(
        "dcgan",
        build=dcgan_spec,
        defaults=PAPER_CHOICES,
        block_choices=CHOICE_KINDS,
        optional=OPTIONAL_CHOICES,
        param_choices=PARAM_OWNERS,
        int_choices=INT_CHOICES,
        bool_choices=BOOL_CHOICES,
        requires=REQUIRES,
        claims=CLAIM_TOGGLES,
        description=DESCRIPTION,
    )
