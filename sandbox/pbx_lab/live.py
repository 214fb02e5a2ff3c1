"""What the live test tier gets from the `pbx_lab` fixture (tests/live/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.pbx_lab.admin import PbxAdmin
from sandbox.pbx_lab.ami import AmiClient
from sandbox.pbx_lab.paths import PBX, WORLD, LabPaths
from sandbox.pbx_lab.scenarios import Lab as ScenarioLab
from sandbox.pbx_lab.world import World


@dataclass(frozen=True)
class AmiEndpoint:
    host: str
    port: int
    username: str
    secret: str

    def client(self, *, events: str = "on") -> AmiClient:
        return AmiClient(self.host, self.port, self.username, self.secret, events=events)


EDGE = AmiEndpoint("127.0.0.1", PBX.ami_port, "edge", "edge-secret")
PBX_ADMIN = AmiEndpoint("127.0.0.1", PBX.ami_port, PBX.ami_user, PBX.ami_secret)
WORLD_AMI = AmiEndpoint("127.0.0.1", WORLD.ami_port, WORLD.ami_user, WORLD.ami_secret)


@dataclass
class LiveLab:
    world: World
    admin: PbxAdmin
    paths: LabPaths
    started_here: bool
    edge: AmiEndpoint = EDGE  # the edge agent's AMI user on the PBX
    pbx_admin: AmiEndpoint = PBX_ADMIN  # `lab` user: all permissions
    world_ami: AmiEndpoint = WORLD_AMI
    scenario_lab: ScenarioLab = field(init=False)

    def __post_init__(self) -> None:
        self.scenario_lab = ScenarioLab(world=self.world, admin=self.admin)
