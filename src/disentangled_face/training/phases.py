"""The phases of training (Sec. 3.3.3), each an object: what trains, on which loss, what it logs.

Each phase trains a subset of :class:`~disentangled_face.networks.DisentangledFaceNet`:

* :class:`Phase1` (``phase1``): the encoder and the two heads regress the scaled fitted
  coefficients, ``c_id* = alpha_id / scale_id``, ``c_res* = alpha_exp / scale_exp``, with the
  Euclidean loss :func:`~disentangled_face.networks.losses.code_regression_loss`. Alone, this is
  the "3DMM-CNN-like" baseline (coefficients regressed from the image, shape from the 3DMM).
* :class:`Phase2` (``phase2``): the two decoders, separately: ``dec_id(c_id*)`` regresses the
  fitted identity deformation ``Delta s_Id = A_id alpha_id`` and ``dec_res(c_res*)`` the fitted
  expression part ``Delta s_Res = A_exp alpha_exp`` (both L_R in mm², summed); inputs are the
  target codes. Trained by gradient descent (as the paper) or, with ``optimizer: lstsq``,
  solved exactly (:mod:`.closed_form`).
* :class:`Phase3` (``phase3``): everything end to end from the Phase I/II weights with
  ``L = lambda_r L_R + L_C`` (Eq. 5) and the λ_R plateau switch (:class:`~.plateau.PlateauSwitch`).
  The classifier on ``c_id`` starts untrained.
* :class:`TexturePhase` (``texture``): the "texture network" baseline,
  :class:`~disentangled_face.networks.TextureNet`, SphereFace-20 trained for identification
  only (softmax over the training subjects).

Datasets are any ``torch.utils.data.Dataset`` of dicts with ``image`` (3, H, W) float in
[-1, 1], ``label`` int64 (0-based training subject), ``alpha_id`` (k_id,) and ``alpha_exp``
(k_exp,): the **fitted** coefficients of the image (Sec. 3.3.2).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, StackDataset

from ..config import NetworkConfig, PhaseConfig
from ..data.torch_dataset import dataset_codes
from ..networks import CodeScaler, DisentangledFaceNet, TextureNet, losses
from .plateau import PlateauSwitch

__all__ = ["Phase", "Phase1", "Phase2", "Phase3", "TexturePhase", "PHASE_OBJECTS", "PHASES", "get_phase",
           "PhaseStep", "fit_code_scaler"]


def fit_code_scaler(dataset: Dataset, margin: float = NetworkConfig.model_fields["code_margin"].default,
                    n_id: int | None = None) -> CodeScaler:
    """:meth:`CodeScaler.fit` on a training dataset's fitted coefficients (``c_id`` coding the
    first ``n_id`` identity modes; default all)."""
    a_id, a_exp, _ = dataset_codes(dataset)
    return CodeScaler.fit(a_id, a_exp, margin=margin, n_id=n_id)


class Phase:
    """One phase: its network, trainable parts, loss, logged metrics, λ_R schedule and start.

    Attributes
    ----------
    name : str
        ``phase1``, ``phase2``, ``phase3`` or ``texture`` (the config section and file stem).
    title : str
        For figures.
    network_class : type
        The network class it trains.
    trains : tuple of str or None
        Top-level submodules whose parameters train (``None``: all).
    metrics : tuple of str
        The loss parts logged per step (``loss`` first).
    curves : tuple of (label, column, weight column or None)
        What a history figure draws.
    needs_model : bool
        Whether its loss needs the morphable model (the fitted shapes are the targets).
    has_shape : bool
        Whether its network reconstructs a shape (all but the texture network).
    classifier_trained : bool
        Whether its network's classifier is trained (identification accuracy is meaningful).
    after : str or None
        The phase whose final checkpoint it starts from (``None``: built fresh, :meth:`build`).
    """

    name = ""
    title = ""
    network_class: type = DisentangledFaceNet
    trains: tuple[str, ...] | None = None
    metrics: tuple[str, ...] = ("loss",)
    curves: tuple[tuple[str, str, str | None], ...] = (("loss", "loss", None),)
    needs_model = False
    has_shape = True
    classifier_trained = False
    after: str | None = None

    def __repr__(self) -> str:
        return f"<phase {self.name}>"

    def switch(self, pcfg: PhaseConfig) -> PlateauSwitch:
        """The λ_R schedule: a constant (unused) 0 for ``pcfg.epochs`` epochs."""
        return PlateauSwitch((0.0,), pcfg.epochs, min_delta=0.0)

    def solves_in_closed_form(self, pcfg: PhaseConfig) -> bool:
        """Whether the phase is solved exactly instead of trained (Phase II with ``lstsq``)."""
        return False

    def inputs(self, dataset: Dataset) -> Dataset:
        """What the phase's loader iterates over (the dataset itself; Phase II: its codes)."""
        return dataset

    def build(self, network: NetworkConfig, data) -> nn.Module:
        """A fresh network for this phase (phases with :attr:`after` start from a checkpoint instead)."""
        raise ValueError(f"{self.name} starts from {self.after}'s checkpoint")

    def set_trainable(self, net: nn.Module) -> None:
        """``requires_grad`` on the parameters of :attr:`trains`, off elsewhere."""
        for name, p in net.named_parameters():
            p.requires_grad_(self.trains is None or name.split(".")[0] in self.trains)

    def check_network(self, net: nn.Module) -> None:
        """Raise ValueError unless ``net`` is this phase's kind of network."""
        if not isinstance(net, self.network_class):
            raise ValueError(f"phase {self.name!r} trains a {self.network_class.__name__}")

    def check_model(self, net: nn.Module, model) -> None:
        """Raise ValueError when the phase needs the morphable model and it is missing or of other sizes."""
        if not self.needs_model:
            return
        if model is None:
            raise ValueError(f"{self.name} needs the morphable model (its fitted shapes are the targets)")
        if (model.n_vertices, model.n_id, model.n_exp) != (net.n_vertices, net.model_n_id, net.n_exp):
            raise ValueError("the morphable model's sizes differ from the network's")

    def loss(self, step: "PhaseStep", image, label, alpha_id, alpha_exp) -> tuple[torch.Tensor, dict]:
        """The phase's loss on one batch and its parts (detached scalars, :attr:`metrics`)."""
        raise NotImplementedError

    def prepare(self, net: nn.Module, dataset: Dataset, pcfg: PhaseConfig) -> dict:
        """Set-up on the starting weights before the first step of a fresh run (not on resume);
        returns what to record in the final checkpoint's info."""
        return {}

    def shape_network(self, net: nn.Module, model) -> nn.Module | None:
        """The network whose decoded shape the learning curves measure (None: no shape)."""
        return net if self.has_shape else None

    def epoch_metrics(self, net: nn.Module, train_sample: Dataset, val_sample: Dataset, model) -> dict:
        """The learning curves' point at an epoch's end (chapter 6), on fixed samples.

        ``train_rmse_mm`` / ``val_rmse_mm``: per-vertex RMS distance (mm, model frame, no
        alignment) of the decoded shape to the *targets* of training / held-out images;
        ``val_true_rmse_mm``: held-out images against the true shapes; ``train_acc`` /
        ``val_acc``: top-1 identification over the training subjects (phases with a trained
        classifier). The network is left in training mode.
        """
        from ..networks.inference import evaluate  # noqa: PLC0415 - evaluation helpers only here

        out: dict[str, float] = {}
        shaped = self.shape_network(net, model)
        try:
            if shaped is not None:
                out["train_rmse_mm"] = evaluate(shaped, train_sample, model)["rmse_mm"]
                out["val_rmse_mm"] = evaluate(shaped, val_sample, model, gt_keys=("fit_alpha_id", "fit_alpha_exp"))["rmse_mm"]
                out["val_true_rmse_mm"] = evaluate(shaped, val_sample, model)["rmse_mm"]
            if self.classifier_trained:
                out["train_acc"] = evaluate(net, train_sample)["acc"]
                out["val_acc"] = evaluate(net, val_sample)["acc"]
        finally:
            net.train()
        return out


class Phase1(Phase):
    """Phase I: encoder and heads regress the scaled fitted codes (the "3DMM-CNN-like" network)."""

    name, title = "phase1", "Phase I: code regression"
    trains = ("encoder", "head_id", "head_res")
    metrics = ("loss", "L_id", "L_res")
    curves = (("loss", "loss", None), ("L_id", "L_id", None), ("L_res", "L_res", None))

    def build(self, network: NetworkConfig, data) -> nn.Module:
        scaler = fit_code_scaler(data.train, network.code_margin, n_id=network.id_codes)
        return DisentangledFaceNet.from_config(network, data.model, data.n_subjects, scaler=scaler)

    def loss(self, step, image, label, alpha_id, alpha_exp):
        net = step.net
        _, c_id, c_res = net.encode(image)
        t_id, t_res = net.scaler.to_code(alpha_id, alpha_exp)
        return losses.code_regression_loss(c_id, c_res, t_id, t_res, *step.code_weights)

    def shape_network(self, net, model):
        """Its decoders are untrained: the curves decode the codes through the 3DMM (a copy)."""
        import copy  # noqa: PLC0415

        shaped = copy.deepcopy(net)
        shaped.init_decoders_from_model(model)
        return shaped


class Phase2(Phase):
    """Phase II: the decoders regress the fitted deformations from the target codes (L_R, mm²)."""

    name, title = "phase2", "Phase II: decoders (L_R, mm²)"
    trains = ("dec_id", "dec_res")
    metrics = ("loss", "L_id", "L_res")
    curves = (("L_id", "L_id", None), ("L_res", "L_res", None))
    needs_model = True
    after = "phase1"

    def solves_in_closed_form(self, pcfg: PhaseConfig) -> bool:
        return pcfg.optimizer == "lstsq"

    def inputs(self, dataset: Dataset) -> Dataset:
        a_id, a_exp, _ = dataset_codes(dataset)  # no images: items {alpha_id, alpha_exp}
        return StackDataset(alpha_id=torch.from_numpy(np.ascontiguousarray(a_id, np.float32)),
                            alpha_exp=torch.from_numpy(np.ascontiguousarray(a_exp, np.float32)))

    def loss(self, step, image, label, alpha_id, alpha_exp):
        net = step.net
        c_id, c_res = net.scaler.to_code(alpha_id, alpha_exp)
        l_id = losses.reconstruction_loss(net.dec_id(c_id), alpha_id @ step.A_id.T)
        l_res = losses.reconstruction_loss(net.dec_res(c_res), alpha_exp @ step.A_exp.T)
        loss = l_id + l_res
        return loss, {"loss": loss.detach(), "L_id": l_id.detach(), "L_res": l_res.detach()}


class Phase3(Phase):
    """Phase III: everything, end to end, on ``L = lambda_r L_R + L_C`` (Eq. 5) with the plateau switch."""

    name, title = "phase3", "Phase III: λ_R L_R + L_C"
    metrics = ("loss", "L_R", "L_C", "acc", "lambda_r")
    curves = (("loss", "loss", None), ("λ_R·L_R", "L_R", "lambda_r"), ("L_C", "L_C", None))
    needs_model = True
    classifier_trained = True
    after = "phase2"

    def switch(self, pcfg) -> PlateauSwitch:
        return PlateauSwitch(tuple(pcfg.lambda_r), pcfg.epochs, pcfg.epochs_after_switch,
                             pcfg.plateau_patience, pcfg.plateau_min_delta)

    def prepare(self, net, dataset, pcfg) -> dict:
        """With ``classifier_init: class_means``, the classifier starts at the nearest-class-mean
        rule of the starting encoder's codes of the training images
        (:meth:`~disentangled_face.networks.DisentangledFaceNet.init_classifier_from_codes`)."""
        if getattr(pcfg, "classifier_init", "random") != "class_means":
            return {}
        from torch.utils.data import DataLoader  # noqa: PLC0415

        was_training, codes, labels = net.training, [], []
        net.eval()
        dev = next(net.parameters()).device
        with torch.no_grad():
            for b in DataLoader(dataset, batch_size=256, shuffle=False):
                codes.append(net.encode(b["image"].to(dev))[1].float().cpu())
                labels.append(b["label"])
        net.train(was_training)
        acc = net.init_classifier_from_codes(torch.cat(codes), torch.cat(labels))
        return {"classifier_init_train_acc": acc}

    def loss(self, step, image, label, alpha_id, alpha_exp):
        # decoders and shapes in fp32 even under autocast (mm precision)
        net = step.net
        _, c_id, c_res = net.encode(image)
        logits = net.classifier(c_id)
        with torch.autocast(c_id.device.type, enabled=False):
            _, _, shape = net.decode(c_id.float(), c_res.float())
            s_fit = step.mean + alpha_id.float() @ step.A_id.T + alpha_exp.float() @ step.A_exp.T
            return losses.joint_loss(shape, s_fit, logits.float(), label, step.lambda_r,
                                     getattr(step.pcfg, "l_r", "per_vertex"))


class TexturePhase(Phase):
    """The texture network: SphereFace-20 and a softmax classifier on identification only (L_C)."""

    name, title = "texture", "texture network: L_C"
    network_class = TextureNet
    metrics = ("loss", "L_C", "acc")
    curves = (("L_C", "L_C", None),)
    has_shape = False
    classifier_trained = True

    def build(self, network: NetworkConfig, data) -> nn.Module:
        return TextureNet.from_config(network, data.n_subjects)

    def loss(self, step, image, label, alpha_id, alpha_exp):
        out = step.net(image)
        loss = losses.identification_loss(out["logits"], label)
        acc = (out["logits"].argmax(1) == label).float().mean()
        return loss, {"loss": loss.detach(), "L_C": loss.detach(), "acc": acc}


#: The phases in training order, by name.
PHASE_OBJECTS: dict[str, Phase] = {p.name: p for p in (Phase1(), Phase2(), Phase3(), TexturePhase())}
PHASES = tuple(PHASE_OBJECTS)


def get_phase(phase: str | Phase) -> Phase:
    """The phase object of a name (a :class:`Phase` is returned as is).

    Raises
    ------
    ValueError
        On an unknown name.
    """
    if isinstance(phase, Phase):
        return phase
    if phase not in PHASE_OBJECTS:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    return PHASE_OBJECTS[phase]


class PhaseStep(nn.Module):
    """Wraps a network so that one ``forward(**batch)`` returns its phase's loss (DDP wraps this).

    Holds the morphable model's bases (``A_id``, ``A_exp``, ``mean``: constants, kept out of the
    state) for the phases whose targets are fitted shapes, and the current ``lambda_r``.
    """

    def __init__(self, phase: Phase, net: nn.Module, model=None, pcfg: PhaseConfig | None = None):
        super().__init__()
        self.net, self.phase, self.pcfg = net, phase, pcfg
        self.lambda_r = 0.0
        self.code_weights: tuple = (None, None)  # Phase I's per-code weights (the shape_energy loss)
        phase.check_model(net, model)
        if getattr(pcfg, "loss", "code") == "shape_energy":
            if model is None:
                raise ValueError(f"{phase.name}'s shape_energy loss needs the morphable model")
            self.code_weights = losses.shape_energy_weights(model, net.scaler)
        if phase.needs_model:
            self.A_id = torch.as_tensor(model.A_id)  # (3n, k_id), mm
            self.A_exp = torch.as_tensor(model.A_exp)
            self.mean = torch.as_tensor(model.s_mean)

    def to(self, *args, **kwargs):  # keep the (constant, large) bases out of state/buffers
        out = super().to(*args, **kwargs)
        if self.code_weights[0] is not None:
            dev = next(self.net.parameters()).device
            self.code_weights = tuple(w.to(dev) for w in self.code_weights)
        if hasattr(self, "A_id"):
            dev = next(self.net.parameters()).device
            self.A_id, self.A_exp, self.mean = (t.to(dev) for t in (self.A_id, self.A_exp, self.mean))
        return out

    def forward(self, image=None, label=None, alpha_id=None, alpha_exp=None):
        return self.phase.loss(self, image, label, alpha_id, alpha_exp)
