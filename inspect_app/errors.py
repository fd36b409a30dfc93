"""Exceptions raised across layers; each names the bad value and, where it helps, the allowed ones."""


class InspectAppError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(InspectAppError):
    """A setting, recipe or pipeline file holds a value that cannot be used."""


class ImageDecodeError(InspectAppError):
    """An image file cannot be read, is truncated, empty, too large or of an unsupported mode."""


class DatasetError(InspectAppError):
    """A dataset folder or manifest does not have the expected layout or content."""


class UnknownBackboneError(InspectAppError):
    """A backbone name is neither bundled nor known to timm."""


class WeightsUnavailableError(InspectAppError):
    """Pretrained weights could not be loaded (for example: offline and not bundled)."""


class CheckpointError(InspectAppError):
    """A checkpoint folder is missing files or its model card does not match its weights."""


class ReloadCheckError(CheckpointError):
    """A saved model, loaded back, does not score as the model that was calibrated did."""


class StorageError(InspectAppError):
    """The database cannot be reached or refused a write."""


class ActiveModelChangedError(StorageError):
    """A promotion expected another active model than the one the database holds (another promotion came first)."""


class AccessDeniedError(InspectAppError):
    """A dashboard or CLI control was attempted without a signed-in user holding the role it needs."""


class SignInThrottledError(AccessDeniedError):
    """Too many failed sign-ins for a user name or from a client; attempts are refused for a back-off period."""


class SessionInvalidError(AccessDeniedError):
    """A dashboard session token is malformed, forged, expired or no longer matches its user."""


class LastAdminError(InspectAppError):
    """A user change would leave the plant without an active admin (nobody could administer users any more)."""


class RunStateError(InspectAppError):
    """A training run is not in a state that allows the operation (for example cancelling a finished run)."""


class SourceError(InspectAppError):
    """An image source (camera, stream, video, folder, glob) is misdeclared or cannot be opened."""


class SinkError(InspectAppError):
    """A sink (reject hook, file output) could not deliver a result."""
