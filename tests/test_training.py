"""Does the training loop record the right numbers, and does the digits loader split honestly?"""

import pytest
import torch
from torch import nn

from coursekit.data import digits
from coursekit.optim import SGD
from coursekit.training import train


def test_digits_is_standardised_on_train_and_disjointly_split():
    split = digits(test_fraction=0.25, seed=1)
    assert split.x_train.shape == (1348, 64) and split.x_test.shape == (449, 64)
    assert set(split.y_train.unique().tolist()) == set(range(10))
    varying = split.x_train.std(0) > 0
    torch.testing.assert_close(split.x_train.mean(0), torch.zeros(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(split.x_train.std(0)[varying], torch.ones(int(varying.sum())))
    assert not torch.equal(digits(seed=2).x_train, digits(seed=1).x_train)


def test_full_batch_training_is_gradient_descent_and_records_each_step():
    torch.manual_seed(0)
    x, y = torch.randn(20, 3), torch.randn(20, 1)
    model = nn.Linear(3, 1)
    reference = nn.Linear(3, 1)
    reference.load_state_dict(model.state_dict())
    history = train(model, SGD(model.parameters(), lr=0.1), nn.functional.mse_loss, x, y, epochs=5)
    assert len(history.loss) == len(history.grad_norm) == len(history.lr) == 5
    # Hand-written gradient descent on the same loss gives the same losses and weights.
    for k in range(5):
        reference.zero_grad()
        loss = nn.functional.mse_loss(reference(x), y)
        loss.backward()
        grad_norm = torch.cat([p.grad.flatten() for p in reference.parameters()]).norm()
        assert history.loss[k] == pytest.approx(loss.item())
        assert history.grad_norm[k] == pytest.approx(grad_norm.item(), rel=1e-5)
        with torch.no_grad():
            for p in reference.parameters():
                p -= 0.1 * p.grad
    torch.testing.assert_close(model.weight, reference.weight)


def test_minibatches_cover_the_data_once_per_epoch_and_bad_arguments_raise():
    x, y = torch.randn(10, 2), torch.randn(10, 1)
    model = nn.Linear(2, 1)
    history = train(
        model,
        SGD(model.parameters(), lr=0.01),
        nn.functional.mse_loss,
        x,
        y,
        epochs=3,
        batch_size=4,
    )
    assert len(history.loss) == 3 * 3  # batches of 4, 4, 2
    with pytest.raises(ValueError, match="batch_size"):
        train(model, SGD(model.parameters()), nn.functional.mse_loss, x, y, batch_size=0)
    with pytest.raises(ValueError, match="epochs"):
        train(model, SGD(model.parameters()), nn.functional.mse_loss, x, y, epochs=0)
