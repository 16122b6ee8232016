"""Names of the changes the audit log records; stable strings that scripts may filter on."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    MODEL_CREATE = "model.create"
    MODEL_DELETE = "model.delete"
    MODEL_RESTORE = "model.restore"
    VERSION_REGISTER = "version.register"
    VERSION_DELETE = "version.delete"
    ALIAS_SET = "alias.set"
    ALIAS_REMOVE = "alias.remove"
    TAG_SET = "tag.set"
    TAG_REMOVE = "tag.remove"
    ROLLOUT_START = "rollout.start"
    ROLLOUT_STEP = "rollout.step"
    ROLLOUT_PAUSE = "rollout.pause"
    ROLLOUT_RESUME = "rollout.resume"
    ROLLOUT_PROMOTE = "rollout.promote"
    ROLLOUT_ROLLBACK = "rollout.rollback"
    ROLLOUT_ABORT = "rollout.abort"
    RETRAIN_TRIGGER = "retrain.trigger"
    RETRAIN_TRAINING = "retrain.training"
    RETRAIN_GATE = "retrain.gate"
    RETRAIN_APPROVE = "retrain.approve"
    RETRAIN_DECLINE = "retrain.decline"
    RETRAIN_FAIL = "retrain.fail"
