"""Event and input word layouts."""

from hw.stream import EventLayout, InputLayout, shape3


def test_event_layout_widths():
    lay = EventLayout((4, 64, 33))
    assert lay["kind"].width == 2
    assert (lay["c"].width, lay["y"].width, lay["x"].width) == (2, 6, 6)
    assert EventLayout((11,)).tensor_shape == (11, 1, 1)
    assert EventLayout((1, 1, 1))["c"].width == 1


def test_input_layout_can_express_out_of_range_values():
    lay = InputLayout(16)
    assert lay["x"].width == lay["y"].width == lay["p"].width == 16
    assert shape3((5,)) == (5, 1, 1) and shape3((2, 3, 4)) == (2, 3, 4)
