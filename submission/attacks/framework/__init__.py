"""The attack framework: parameters, objective, distortion budget, the driver (`Attack.run`) and the budget search.

Methods live in `submission.attacks.methods`; the registry in `submission.attacks`."""
