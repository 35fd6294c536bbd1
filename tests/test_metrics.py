def test_finite_numbers_for_json():
    import numpy as np

    from terralearn.geo.numbers import finite

    assert finite(np.float32(0.5)) == 0.5 and finite(3) == 3.0 and finite("2.5") == 2.5
    assert [finite(v) for v in (None, True, np.nan, np.inf, -np.inf, "x", [1])] == [None] * 7
