"""The web app: a live server on a free local port, driven through gradio_client (fast) and
through a real browser (slow; Debian's chromium and chromium-driver with selenium)."""

import json
import shutil
import socket
from pathlib import Path

import pytest
from PIL import Image

gr = pytest.importorskip("gradio")
client_lib = pytest.importorskip("gradio_client")

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@pytest.fixture(scope="module")
def server():
    from spectral_resnet.app import MAX_UPLOAD, build_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = build_app().queue()
    app.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        max_file_size=MAX_UPLOAD,
        show_error=True,
    )
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_shade_through_gradio_client_returns_the_output_image_first(server):
    client = client_lib.Client(server, verbose=False)
    target, sample = (client_lib.handle_file(str(ASSETS / n)) for n in ("toof.png", "tone.png"))
    output, sheet, report = client.predict(target, sample, api_name="/shade")
    with Image.open(output) as out, Image.open(ASSETS / "toof.png") as original:
        assert out.size == original.size
        assert out.convert("RGB").tobytes() != original.convert("RGB").tobytes()  # it pasted
    assert Image.open(sheet).size[0] > 4 * Image.open(output).size[0]  # five panels
    run = json.loads(Path(report).read_text())["runs"][0]
    assert run["pastes"] and sum(run["pastes"]) > 0


def test_bad_input_is_a_message_not_a_traceback(server):
    client = client_lib.Client(server, verbose=False)
    target, sample = (client_lib.handle_file(str(ASSETS / n)) for n in ("toof.png", "tone.png"))
    with pytest.raises(client_lib.exceptions.AppError, match="pattern"):
        client.predict(target, sample, pattern="cxq", api_name="/shade")


@pytest.mark.slow
def test_a_browser_uploads_two_images_clicks_and_sees_an_output(server):
    webdriver = pytest.importorskip("selenium.webdriver")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(driver_path), options=options)
    try:
        driver.get(server)
        wait = WebDriverWait(driver, 120)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
        uploads = driver.find_elements(By.CSS_SELECTOR, "input[type=file]")
        uploads[0].send_keys(str(ASSETS / "toof.png"))
        uploads[1].send_keys(str(ASSETS / "tone.png"))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "img")) >= 2)  # both shown
        driver.find_element(By.ID, "shade").click()
        image = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#output img[src]")))
        assert image.get_attribute("src")
    finally:
        driver.quit()
