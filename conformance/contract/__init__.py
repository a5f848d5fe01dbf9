"""The adapter's contract: what an implementation under test provides and how it is checked.

:mod:`.adapter` (the protocol and the capability tags), :mod:`.registry` (finding and loading an adapter),
:mod:`.validate` (the checks every adapter and learner passes, with messages naming the fix), :mod:`.conventions`
(legitimate differences an adapter declares), :mod:`.loss_scale` with :mod:`.loss_scale_heads` (a constant factor
in the loss, measured rather than declared)."""
