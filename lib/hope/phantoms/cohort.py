"""Series of phantoms with consecutive seeds, from any phantom generator."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from hope.phantoms.neck_ct import CT_SPEC, generate_neck_ct
from hope.phantoms.render import Phantom
from hope.phantoms.spec import PhantomSpec

#: ``generator(seed, labels, spec=spec) -> Phantom``, e.g. ``generate_neck_ct`` or
#: ``functools.partial(generate_neck_mr, contrast="T1")``.
PhantomGenerator = Callable[..., Phantom]


def generate_cohort(
    n: int,
    labels: Mapping[str, int],
    spec: PhantomSpec = CT_SPEC,
    first_seed: int = 0,
    generator: PhantomGenerator = generate_neck_ct,
) -> Iterator[Phantom]:
    """Yield ``n`` phantoms with seeds ``first_seed``, ``first_seed + 1``, ... (generated lazily).

    ``generator`` is called as ``generator(seed, labels, spec=spec)``; pass ``hope.phantoms.MR_SPEC`` as ``spec``
    with an MR generator.
    """
    if n < 0:
        raise ValueError(f"cohort size must be >= 0, got {n}")
    for seed in range(first_seed, first_seed + n):
        yield generator(seed, labels, spec=spec)
