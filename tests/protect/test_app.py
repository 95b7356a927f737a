"""The web app: its API end to end, and the page in a real browser (Debian's chromium).

One server for the module, on a free local port, with its private temporary folder under the
test's, so the tests can see that nothing is kept there.
"""

import base64
import io
import time
import wave

import numpy as np
from PIL import Image
import pytest

from conftest import ONE_DEVICE
from conftest import REPO
from conftest import run_module
import espeak_voice
import protect_helpers as helpers

MAX_PIXELS = 200_000  # Over the synthetic photos (about 250 x 250), under the "huge" one.


@pytest.fixture(scope="module")
def photos(synthetic_dataset, tmp_path_factory):
  """The sample photo with its two requests, its GPS twin, and the CLI's output for it."""
  (source, sentences), = helpers.people_photos(synthetic_dataset)
  folder = tmp_path_factory.mktemp("app_photos")
  return {"photo": helpers.copy(source, folder / "people.png"), "sentences": sentences[:2],
          "gps": helpers.write_gps_jpeg(source, folder / "camera.jpg"), "folder": folder}


@pytest.fixture(scope="module")
def cli_output(trained_workdir, photos):
  """The CLI's protected image for the sample photo and both requests (several people)."""
  out = photos["folder"] / "cli.png"
  run_module("brppnet_jax.protect", f"--workdir={trained_workdir}", f"--image={photos['photo']}",
             *[f"--text={s}" for s in photos["sentences"]], f"--out={out}", env=ONE_DEVICE)
  return np.asarray(Image.open(out))


@pytest.fixture(scope="module")
def server(trained_workdir, tmp_path_factory):
  temp_dir = tmp_path_factory.mktemp("app_server")
  with helpers.app_server(trained_workdir, temp_dir, f"--max_pixels={MAX_PIXELS}") as url:
    yield url, temp_dir


@pytest.fixture(scope="module")
def client(server):
  from gradio_client import Client  # pylint: disable=import-outside-toplevel
  return Client(server[0], verbose=False)


def protect(client, image, text, method="pixelate", threshold=0.5, margin=None):
  from gradio_client import handle_file  # pylint: disable=import-outside-toplevel
  args = [handle_file(str(image)), text, method, threshold]
  if margin is not None:
    args.append(margin)
  return client.predict(*args, api_name="/protect")


def decode_png(data_url: str) -> Image.Image:
  assert data_url.startswith("data:image/png;base64,")
  return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


def kept_files(temp_dir) -> list[str]:
  """Files the server holds beyond its log and the speech model's word lists."""
  return [f for f in helpers.files_under(temp_dir)
          if f != "server.log" and "/speech/" not in f]


def test_api_gives_the_cli_result_and_keeps_nothing(client, server, photos, cli_output):
  protected, overlay, report, details = protect(client, photos["photo"],
                                                "\n".join(photos["sentences"]))
  image = decode_png(protected["url"])
  helpers.assert_no_metadata(image)
  np.testing.assert_array_equal(np.asarray(image), cli_output)
  assert np.asarray(decode_png(overlay["url"])).shape == cli_output.shape
  assert [r["text"] for r in details["requests"]] == photos["sentences"]
  assert all(r["share"] > 0 for r in details["requests"])
  assert details["trained_on"] == "synthetic"
  for r in details["requests"]:
    assert f"protected {100 * r['share']:.1f}% of the image for {r['text']!r}" in report
  gps_result = decode_png(protect(client, photos["gps"], photos["sentences"][0])[0]["url"])
  helpers.assert_no_metadata(gps_result)
  assert np.asarray(gps_result).shape == cli_output.shape  # Upright, as the source.
  assert kept_files(server[1]) == []
  # Nor anything beside the code: Gradio writes a .pyi beside a module that subclasses one of
  # its components, and a .gradio folder for flagging.
  assert not list((REPO / "brppnet_jax").rglob("*.pyi")) and not (REPO / ".gradio").exists()


def test_bad_input_gets_a_message_and_the_server_goes_on(client, photos, tmp_path):
  from gradio_client import exceptions  # pylint: disable=import-outside-toplevel
  from gradio_client import handle_file  # pylint: disable=import-outside-toplevel
  notes = tmp_path / "notes.jpg"
  notes.write_text("not a photo\n")
  huge = tmp_path / "huge.png"
  Image.fromarray(np.zeros((500, 500, 3), np.uint8)).save(huge)
  silence = tmp_path / "silence.wav"
  with wave.open(str(silence), "wb") as f:
    f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
    f.writeframes(np.zeros(16000, np.int16).tobytes())
  sentence = photos["sentences"][0]
  cases = [
      (lambda: protect(client, notes, sentence), r"'notes.jpg' is not a readable image"),
      (lambda: protect(client, huge, sentence),
       r"'huge.png' is too large: 500x500 pixels is over the limit of 200000 pixels"),
      (lambda: protect(client, photos["photo"], " \n "), r"Type a request first"),
      (lambda: protect(client, photos["photo"], "protect privacy of zorbly"),
       r"has no word the model knows"),
      (lambda: protect(client, photos["photo"], "protect privacy of the"), r"names nobody"),
      (lambda: client.predict(handle_file(str(notes)), "", api_name="/transcribe"),
       r"unsupported audio: 'notes.jpg' is not a PCM WAV file"),
      (lambda: client.predict(handle_file(str(silence)), "", api_name="/transcribe"),
       r"No speech was recognised in the recording"),
  ]
  for call, expected in cases:
    with pytest.raises(exceptions.AppError, match=expected):
      call()
  protected, _, _, _ = protect(client, photos["photo"], sentence)
  assert protected["url"].startswith("data:image/png")


def test_nothing_protected_is_a_warning_not_a_result(client, photos):
  protected, overlay, report, details = protect(client, photos["photo"],
                                                photos["sentences"][0], threshold=1.0)
  assert protected is None and overlay is None
  assert report.startswith("**Warning:** Nothing was protected for ")
  assert details["warning"].startswith("Nothing was protected")


def test_two_requests_at_once_are_both_answered(client, photos):
  from gradio_client import handle_file  # pylint: disable=import-outside-toplevel
  alone = [np.asarray(decode_png(protect(client, photos["photo"], s)[0]["url"]))
           for s in photos["sentences"]]
  jobs = [client.submit(handle_file(str(photos["photo"])), s, "pixelate", 0.5,
                        api_name="/protect") for s in photos["sentences"]]
  together = [np.asarray(decode_png(job.result(timeout=120)[0]["url"])) for job in jobs]
  for a, b in zip(alone, together):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(*alone)


def browser_page(playwright, *extra_args):
  browser = playwright.chromium.launch(executable_path=helpers.CHROMIUM,
                                       args=helpers.CHROMIUM_ARGS + list(extra_args))
  context = browser.new_context(viewport={"width": 1280, "height": 1000},
                                permissions=["microphone"])
  return browser, context.new_page()


def test_page_protects_a_typed_request_like_the_cli(server, photos, cli_output, tmp_path):
  helpers.require_browser()
  from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel
  requested = []
  with sync_playwright() as playwright:
    browser, page = browser_page(playwright)
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server[0])
    page.wait_for_selector("#trained-on")
    assert "trained on the synthetic twin" in page.locator("#trained-on").inner_text()
    assert "real photos are beyond it" in page.locator("#trained-on").inner_text()
    page.locator("#photo input[type=file]").set_input_files(str(photos["photo"]))
    page.locator("#request textarea").fill("\n".join(photos["sentences"]))
    page.locator("#protect").click()
    page.wait_for_selector("#protected img[src^='data:image/png']", timeout=60_000)
    shown = page.locator("#protected img").get_attribute("src")
    report = page.locator("#report").inner_text()
    page.screenshot(path=str(tmp_path / "protect_app.png"), full_page=True)
    browser.close()
  np.testing.assert_array_equal(np.asarray(decode_png(shown)), cli_output)
  assert report.count("protected ") == 2
  hosts = {url.split("/")[2] for url in requested if url.startswith("http")}
  assert hosts == {server[0].split("/")[2]}, hosts
  assert {url.split(":")[0] for url in requested} <= {"http", "data", "blob"}


def test_page_hears_a_spoken_request(server, photos, tmp_path):
  """Chromium's fake microphone plays an espeak-ng recording, padded with silence so the
  recording holds it once."""
  helpers.require_browser()
  from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel
  sentence = photos["sentences"][0]
  spoken = tmp_path / "spoken.wav"
  espeak_voice.speak(sentence, spoken)
  padded = tmp_path / "microphone.wav"
  with wave.open(str(spoken)) as f:
    rate, samples = f.getframerate(), f.readframes(f.getnframes())
  seconds = len(samples) / 2 / rate
  with wave.open(str(padded), "wb") as f:
    f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate)
    f.writeframes(bytes(int(0.3 * rate) * 2) + samples + bytes(20 * rate * 2))
  with sync_playwright() as playwright:
    browser, page = browser_page(playwright, "--use-fake-ui-for-media-stream",
                                 "--use-fake-device-for-media-stream",
                                 f"--use-file-for-fake-audio-capture={padded}")
    page.goto(server[0])
    voice = page.locator("#voice")
    voice.get_by_role("button", name="Record", exact=True).click()
    time.sleep(seconds + 1.5)  # The recording's length, not a speed assertion.
    voice.get_by_role("button", name="Stop", exact=True).first.click()
    page.wait_for_function("document.querySelector('#request textarea').value.length > 0",
                           timeout=60_000)
    heard = page.locator("#request textarea").input_value()
    browser.close()
  assert heard.split() == sentence.split()


def test_a_workdir_without_checkpoint_fails_at_start(tmp_path):
  (tmp_path / "workdir").mkdir()
  proc = run_module("brppnet_jax.protect.app", f"--workdir={tmp_path / 'workdir'}",
                    f"--temp_dir={tmp_path}", env=ONE_DEVICE, check=False)
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: no checkpoint in "), proc.stderr
