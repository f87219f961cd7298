"""Faithful minimal reimplementations of the anchors' updates, written here, for ``benchmarks.anchors``.

They are NOT the anchors' code: each module restates one published training loop (same networks, losses,
optimiser, hyper-parameters and program structure) so that ``python -m benchmarks.anchors`` can time it beside
this project in one process. Where an anchor is a package on PyPI (Rejax), the package itself is used instead.

* ``purejaxrl_ppo``: PureJaxRL's single-file PPO on gymnax CartPole-v1 (``make_train(config)(key)``).
* ``unifloral_offline``: Unifloral's single-file offline IQL and TD3+BC updates (``make_iql``,
  ``make_td3_bc``), 2x256 networks.
"""
