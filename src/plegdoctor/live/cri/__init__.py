"""CRI runtime.v1 client: a proto subset written for pleg-doctor, loaded at run time, and a grpcio client."""

from plegdoctor.live.cri.client import CRIClient, CRIError

__all__ = ["CRIClient", "CRIError"]
