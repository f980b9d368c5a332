"""quant.importers' handler registry: one handler per type, rejected types listed apart."""

import pytest

from quant import importers
from quant.importers import (HANDLERS, REJECTED, NetImportError, handler_for, register, reject,
                             supported_types)


@pytest.fixture
def scratch():
    """A framework name of its own; its entries are removed afterwards."""
    yield "test-framework"
    for table in (HANDLERS, REJECTED):
        for key in [k for k in table if k[0] == "test-framework"]:
            del table[key]


def test_a_second_handler_for_a_type_raises_and_changes_nothing(scratch):
    @register(scratch, "Conv", "Pool")
    def first(layer, name, ctx):
        pass

    with pytest.raises(ValueError, match="'Pool' already has the handler .*first"):
        @register(scratch, "Linear", "Pool")
        def second(layer, name, ctx):
            pass
    assert handler_for(scratch, "Pool") is first
    assert handler_for(scratch, "Linear") is None          # nothing half-registered
    with pytest.raises(ValueError):
        reject(scratch, "no", "Conv")
    assert handler_for(scratch, "Conv") is first


def test_rejected_types_raise_their_reason_and_are_not_listed_as_supported(scratch):
    class Ctx:
        class builder:
            where = "net.pt"
            noun = "layer"

    class BatchNorm:
        pass

    @register(scratch, "Conv")
    def conv(layer, name, ctx):
        pass
    reject(scratch, "fold it first", "BatchNorm")
    assert supported_types(scratch) == ["BatchNorm", "Conv"]
    assert supported_types(scratch, rejected=False) == ["Conv"]
    with pytest.raises(NetImportError, match=r"^net.pt: layer bn3 \(BatchNorm\): fold it "
                                             r"first$"):
        handler_for(scratch, "BatchNorm")(BatchNorm(), "bn3", Ctx)


def test_the_importers_register_their_rejected_types():
    import quant.importers.nir  # noqa: F401 - registers the NIR handlers
    import quant.importers.snntorch  # noqa: F401
    assert "BatchNorm2d" in supported_types("snntorch")
    assert "BatchNorm2d" not in supported_types("snntorch", rejected=False)
    assert "Leaky" in supported_types("snntorch", rejected=False)
    assert "CubaLIF" not in supported_types("nir", rejected=False)
    assert {"LIF", "IF", "Conv2d"} <= set(supported_types("nir", rejected=False))
    assert importers.REJECTED[("nir", "Threshold")] == "a bare Threshold is not supported; use IF/LIF"
    import quant.importers.nir_graph as g
    assert {"CubaLIF", "LI", "IF", "LIF"} <= set(supported_types(g.FW_NEURON, rejected=False))
    assert {"Delay", "Scale", "Conv2d"} <= set(supported_types(g.FW_SYNAPSE, rejected=False))
    assert "Conv1d" not in supported_types(g.FW_SYNAPSE, rejected=False)
