// Loads the Swagger UI page in Debian's Chromium, driven by playwright-core (no browser download),
// expands getSession, saves a full-page screenshot, and prints what rendered as one JSON line.
//   node tests/browser/docs_page.mjs URL SCREENSHOT.png
import { chromium } from 'playwright-core'

const [url, screenshot] = process.argv.slice(2)
if (!url || !screenshot) {
  console.error('usage: node tests/browser/docs_page.mjs URL SCREENSHOT.png')
  process.exit(2)
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  // Without the networking flags Chromium keeps calling home, which this machine refuses.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  timeout: 60_000
})
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  const requests = []
  const failed = []
  const errors = []
  page.on('request', request => requests.push(request.url()))
  page.on('requestfailed', request => failed.push(`${request.url()}: ${request.failure()?.errorText}`))
  page.on('pageerror', error => errors.push(error.message))
  page.on('console', message => { if (message.type() === 'error') errors.push(message.text()) })
  await page.goto(url, { waitUntil: 'load', timeout: 30_000 })
  await page.waitForSelector('.opblock', { timeout: 30_000 })
  const operations = await page.$$eval('.opblock', blocks => blocks.map(block => ({
    id: block.id,
    method: block.querySelector('.opblock-summary-method')?.textContent?.trim(),
    path: block.querySelector('.opblock-summary-path')?.getAttribute('data-path'),
    operationId: block.querySelector('.opblock-summary-operation-id')?.textContent?.trim(),
    summary: block.querySelector('.opblock-summary-description')?.textContent?.trim()
  })))
  const title = (await page.textContent('.info .title'))?.trim()
  const getSession = '#operations-Sessions-getSession'
  await page.click(`${getSession} .opblock-summary`)
  await page.waitForSelector(`${getSession} .responses-table`, { timeout: 30_000 })
  const statuses = await page.$$eval(`${getSession} .responses-table .response .response-col_status`,
    cells => cells.map(cell => cell.textContent.trim()))
  const example = await page.textContent(`${getSession} .responses-table .response .microlight`).catch(() => null)
  await page.screenshot({ path: screenshot, fullPage: true })
  console.log(JSON.stringify({ title, operations, statuses, example, requests, failed, errors }))
} finally {
  await browser.close()
}
