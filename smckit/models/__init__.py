"""Classic SMC models: state-space models, particle filters and an adaptive tempering sampler.

- :class:`StateSpaceModel`: the abstract hidden-Markov model (initial law, transition, observation density);
  :class:`LinearGaussian` (with the exact :func:`kalman_filter` and :func:`rts_smoother`) and
  :class:`StochasticVolatility`.
- :class:`Bootstrap` and :class:`Guided`: the particle filters of a state-space model as Feynman-Kac models.
- :class:`Posterior`: a static Bayesian model (prior and likelihood), the target of the SMC samplers
  :class:`AdaptiveTempering` (adaptive exponents, ESS or CESS, any policy, waste-free option) and
  :class:`DataTempering` (IBIS), with MCMC moves :class:`RandomWalk`, :class:`MALA` and :class:`HMC`.

Every model runs on numpy and torch (CPU or CUDA) from one implementation, with leading batch dimensions.
"""

from smckit.models.data_tempering import DataTempering
from smckit.models.filters import Bootstrap, Guided
from smckit.models.kalman import KalmanResult, KalmanSmootherResult, kalman_filter, rts_smoother
from smckit.models.linear_gaussian import LinearGaussian, OptimalProposal
from smckit.models.moves import HMC, MALA, Move, RandomWalk
from smckit.models.posterior import Evaluated, Posterior
from smckit.models.samplers import SMCSampler
from smckit.models.ssm import MultivariateNormal, Proposal, StateSpaceModel
from smckit.models.stochastic_volatility import StochasticVolatility
from smckit.models.tempering import AdaptiveTempering, TemperingState, tempering_trace

__all__ = [
    "StateSpaceModel",
    "Proposal",
    "MultivariateNormal",
    "LinearGaussian",
    "OptimalProposal",
    "StochasticVolatility",
    "KalmanResult",
    "kalman_filter",
    "KalmanSmootherResult",
    "rts_smoother",
    "Bootstrap",
    "Guided",
    "Posterior",
    "Evaluated",
    "SMCSampler",
    "AdaptiveTempering",
    "DataTempering",
    "TemperingState",
    "tempering_trace",
    "Move",
    "RandomWalk",
    "MALA",
    "HMC",
]
