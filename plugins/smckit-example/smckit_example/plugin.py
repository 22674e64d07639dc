"""The plugin module named by this distribution's entry point: it registers the example's resampler."""

from smckit.plugins import hookimpl

from smckit_example.resampler import ShuffledSystematic


@hookimpl
def smckit_register_resamplers(register):
    """Register ``"shuffled-systematic"`` (alias ``"shuffled"``) with smckit."""
    register(
        "shuffled-systematic",
        ShuffledSystematic,
        aliases=("shuffled",),
        description="systematic resampling of the particles in a random order (unbiased, floor/ceil counts)",
    )
